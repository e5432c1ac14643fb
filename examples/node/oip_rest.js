#!/usr/bin/env node
// JacService through the Open Inference Protocol's HTTP/REST binding from Node.js, with no package: Node's own fetch.
// Tensors travel as bytes (Triton's binary tensor data extension, as tritonclient.http sends them): the request's JSON,
// then each input's little-endian float32 values; the answer's JSON, then each output's. The server needs
// OpenInference:RestUrl (docs/open-inference.md).
//
//   node oip_rest.js --url http://127.0.0.1:8000 --model pinn
//   node oip_rest.js --url http://127.0.0.1:8000 --reference ../../tests/fixtures/reference/mlp_tanh.json
//
// It reads the server's and the model's metadata, infers the outputs, then the Jacobian with respect to each FP32 input
// (parameters jacservice.derivative and jacservice.wrt), and shows how an error reads (an unknown model is 404 with
// {"error": ...}). With --reference, the inputs come from the reference file and every output and Jacobian must match it.
// Exit status: 0 all good, 1 a mismatch, 2 a call or connection failed.
'use strict';

const { parseArgs } = require('util');
const { check, loadReference, madeUpInputs, shapeText, preview } = require('./reference');

const HEADER = 'Inference-Header-Content-Length';

class HttpError extends Error {
  constructor(status, message) {
    super(`HTTP ${status}: ${message}`);
    this.status = status;
  }
}

async function getJson(url, path, timeout) {
  const response = await fetch(url + path, { signal: AbortSignal.timeout(timeout * 1000) });
  const body = await response.json();
  if (!response.ok) throw new HttpError(response.status, body.error);
  return body;
}

// One infer: every input as bytes after the JSON, every output asked for as bytes. Returns the answer's JSON and its
// outputs by name as {shape, data}, the data read from the bytes after the answer's JSON.
async function infer(url, model, inputs, parameters, timeout) {
  const tensors = Object.entries(inputs).map(([name, t]) => [name, t.shape, Float32Array.from(t.data)]);
  const json = Buffer.from(JSON.stringify({
    inputs: tensors.map(([name, shape, values]) =>
      ({ name, shape, datatype: 'FP32', parameters: { binary_data_size: values.byteLength } })),
    parameters: { ...parameters, binary_data_output: true },
  }));
  // Float32Array is in the machine's byte order; the protocol's is little-endian, as every machine Node runs on is.
  const body = Buffer.concat([json, ...tensors.map(([, , values]) => Buffer.from(values.buffer))]);
  const response = await fetch(`${url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/octet-stream', [HEADER]: String(json.length) },
    body,
    signal: AbortSignal.timeout(timeout * 1000),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  if (!response.ok) throw new HttpError(response.status, JSON.parse(bytes.toString('utf8')).error);
  const length = Number(response.headers.get(HEADER));
  const answer = JSON.parse(bytes.subarray(0, length).toString('utf8'));
  const outputs = {};
  let at = length;
  for (const output of answer.outputs) {
    const size = output.parameters.binary_data_size;
    // Copied out: the bytes after the JSON need not be 4-byte aligned for a Float32Array view.
    const values = new Float32Array(bytes.buffer.slice(bytes.byteOffset + at, bytes.byteOffset + at + size));
    outputs[output.name] = { shape: output.shape, data: Array.from(values) };
    at += size;
  }
  if (at !== bytes.length) throw new Error(`${bytes.length - at} bytes after the last output`);
  return { answer, outputs };
}

async function run(url, model, reference, tolerance, timeout) {
  const server = await getJson(url, '/v2', timeout);
  console.log(`Server ${server.name} ${server.version}: extensions ${server.extensions.join(', ')}`);

  const metadata = await getJson(url, `/v2/models/${model}`, timeout);
  const signature = (tensors) => tensors.map((t) => `${t.name}${shapeText(t.shape)}:${t.datatype}`).join(' ');
  console.log(`ModelMetadata ${metadata.name}: versions ${metadata.versions.join(', ')}, platform ${metadata.platform}, ` +
    `inputs ${signature(metadata.inputs)}, outputs ${signature(metadata.outputs)}`);

  const inputs = reference ? reference.inputs : madeUpInputs(metadata, 2);

  const predicted = await infer(url, model, inputs, {}, timeout);
  for (const name of Object.keys(predicted.outputs).sort()) {
    const t = predicted.outputs[name];
    console.log(`infer ${model}: ${name}${shapeText(t.shape)} = ${preview(t.data)}`);
  }

  // One infer per FP32 input asking for the Jacobian; it comes back as "<output>__jacobian__<wrt>". Keyed "d<out>/d<wrt>".
  const jacobians = {};
  for (const input of metadata.inputs.filter((t) => t.datatype === 'FP32')) {
    const parameters = { 'jacservice.derivative': 'jacobian', 'jacservice.wrt': input.name };
    const { answer, outputs } = await infer(url, model, inputs, parameters, timeout);
    for (const out of metadata.outputs.map((o) => o.name)) {
      const t = outputs[`${out}__jacobian__${input.name}`];
      if (!t) continue;
      const label = `d${out}/d${input.name}`;
      console.log(`infer ${model} (${answer.parameters['jacservice.mode']} mode): ${label}${shapeText(t.shape)} = ${preview(t.data)}`);
      jacobians[label] = t;
    }
  }

  // Reading an error: the status, and the protocol's {"error": "..."} body.
  let notFoundOk = false;
  try {
    await getJson(url, '/v2/models/no_such_model', timeout);
    console.log('ModelMetadata no_such_model: succeeded, expected 404');
  } catch (error) {
    if (!(error instanceof HttpError)) throw error;
    notFoundOk = error.status === 404;
    console.log(`ModelMetadata no_such_model: ${error.message}`);
  }

  if (!reference) return notFoundOk ? 0 : 1;
  return check(predicted.outputs, jacobians, reference, tolerance, notFoundOk ? [] : ['ModelMetadata no_such_model did not answer 404']);
}

async function main() {
  const { values: args } = parseArgs({
    options: {
      url: { type: 'string', default: 'http://127.0.0.1:8000' },
      model: { type: 'string', default: '' },
      reference: { type: 'string', default: '' },
      tolerance: { type: 'string', default: '1e-4' },
      timeout: { type: 'string', default: '10' },
    },
  });
  const reference = args.reference ? loadReference(args.reference) : null;
  const model = args.model || (reference ? reference.model : 'pinn');
  try {
    return await run(args.url.replace(/\/$/, ''), model, reference, Number(args.tolerance), Number(args.timeout));
  } catch (error) {
    if (error instanceof HttpError) {
      console.log(`ERROR: call failed: ${error.message}`);
      return 2;
    }
    if (error.name === 'TypeError' || error.name === 'TimeoutError') {
      console.log(`ERROR: no answer from ${args.url}: ${error.cause?.message || error.message}`);
      return 2;
    }
    throw error;
  }
}

main().then((code) => process.exit(code), (error) => {
  console.log(`ERROR: ${error.stack || error}`);
  process.exit(2);
});
