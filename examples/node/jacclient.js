#!/usr/bin/env node
// JacService from Node.js: list the models, describe one, then Predict and BatchJacobian on a small batch.
//
//   npm ci
//   node jacclient.js --target 127.0.0.1:50051 --model pinn
//   node jacclient.js --target 127.0.0.1:50051 --reference ../../tests/fixtures/reference/mlp_tanh.json
//   node jacclient.js --target jac.example.com:50051 --ca ca.crt                                   # TLS
//   node jacclient.js --target jac.example.com:50051 --ca ca.crt --cert client.crt --key client.key  # mutual TLS
//
// With --reference, the inputs come from the reference file and every output and Jacobian must match it:
// max |got - ref| <= tolerance * max |ref| per tensor (the server computes in float32, the reference is float64).
// Exit status: 0 all good, 1 a mismatch, 2 a call or connection failed.
'use strict';

const fs = require('fs');
const path = require('path');
const { parseArgs } = require('util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const { check, loadReference, madeUpInputs, shapeText, preview } = require('./reference');

// Jacobians grow as batch * outputs * inputs; gRPC's default 4 MiB receive limit is too small for real models.
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

// The stubs are built from the .proto when the program starts (proto-loader), so there is no generated code to
// keep in step with the contract: a new RPC in the .proto simply appears on the client.
function loadService(protoRoot) {
  const definition = protoLoader.loadSync('jacservice/v1/jacservice.proto', {
    includeDirs: [protoRoot],
    keepCase: true, // field names as in the .proto: padded_rows, not paddedRows
    longs: Number, // int64 shapes as plain numbers
    defaults: true, // absent fields as their defaults ([] and ''), as in the other languages
  });
  return grpc.loadPackageDefinition(definition).jacservice.v1.JacobianService;
}

// One unary call as a promise; the deadline also reaches the server, which drops the request if it expires while
// queued.
function call(client, method, request, timeoutSeconds) {
  const deadline = new Date(Date.now() + timeoutSeconds * 1000);
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

// Plaintext HTTP/2 unless a TLS file is given; then TLS, presenting the client certificate if there is one. A null CA
// means the system's trust store (Node's bundled roots).
function channelCredentials(args) {
  if (!args.ca && !args.cert) return grpc.credentials.createInsecure();
  const read = (file) => (file ? fs.readFileSync(file) : null);
  return grpc.credentials.createSsl(read(args.ca), read(args.key), read(args.cert));
}

async function main() {
  const { values: args } = parseArgs({
    options: {
      target: { type: 'string', default: '127.0.0.1:50051' },
      ca: { type: 'string', default: '' },
      cert: { type: 'string', default: '' },
      key: { type: 'string', default: '' },
      model: { type: 'string', default: '' },
      reference: { type: 'string', default: '' },
      tolerance: { type: 'string', default: '1e-4' },
      timeout: { type: 'string', default: '10' },
      'proto-root': { type: 'string', default: path.join(__dirname, '..', '..', 'src', 'Protos') },
    },
  });
  const timeout = Number(args.timeout);
  const reference = args.reference ? loadReference(args.reference) : null;
  const model = args.model || (reference ? reference.model : 'pinn');

  if (Boolean(args.cert) !== Boolean(args.key)) {
    console.log('ERROR: --cert and --key go together');
    return 2;
  }
  const JacobianService = loadService(args['proto-root']);
  const client = new JacobianService(args.target, channelCredentials(args), {
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  });
  try {
    await new Promise((resolve, reject) =>
      client.waitForReady(new Date(Date.now() + timeout * 1000), (error) => (error ? reject(error) : resolve())));
  } catch (error) {
    console.log(`ERROR: no server at ${args.target} within ${timeout}s: ${error.message}`);
    return 2;
  }
  try {
    return await run(client, model, reference, Number(args.tolerance), timeout);
  } catch (error) {
    if (error.code === undefined) throw error;
    // Every failed call carries a status code and a message from the server.
    console.log(`ERROR: call failed: ${statusName(error.code)}: ${error.details}`);
    return 2;
  } finally {
    client.close();
  }
}

async function run(client, model, reference, tolerance, timeout) {
  const listing = await call(client, 'ListModels', {}, timeout);
  console.log('ListModels: ' + listing.models.map((m) => `${m.name}/${m.version} ${m.state}`).join(', '));

  const info = await call(client, 'GetModel', { model }, timeout);
  console.log(`GetModel ${info.name}: version ${info.version}, ${info.state}, opset ${info.opset}, ` +
    `inputs ${signature(info.inputs)}, outputs ${signature(info.outputs)}`);

  const inputs = reference ? reference.inputs : madeUpInputs(info, 2);

  const predicted = await call(client, 'Predict', { model, inputs }, timeout);
  for (const name of Object.keys(predicted.outputs).sort()) {
    const t = predicted.outputs[name];
    console.log(`Predict ${model}: ${name}${shapeText(t.shape)} = ${preview(t.data)}`);
  }

  // One BatchJacobian per float input: wrt picks the input to differentiate. Keyed "d<out>/d<wrt>".
  const jacobians = {};
  for (const input of info.inputs.filter((t) => t.dtype === 'float')) {
    const response = await call(client, 'BatchJacobian', { model, inputs, wrt: input.name }, timeout);
    for (const out of Object.keys(response.jacobians).sort()) {
      const t = response.jacobians[out];
      const label = `d${out}/d${input.name}`;
      console.log(`BatchJacobian ${model}: ${label}${shapeText(t.shape)} = ${preview(t.data)}`);
      jacobians[label] = t;
    }
  }

  // Reading an error status: an unknown model is NOT_FOUND, with a message saying which.
  let notFoundOk = false;
  try {
    await call(client, 'GetModel', { model: 'no_such_model' }, timeout);
    console.log('GetModel no_such_model: succeeded, expected NOT_FOUND');
  } catch (error) {
    notFoundOk = error.code === grpc.status.NOT_FOUND;
    console.log(`GetModel no_such_model: ${statusName(error.code)}: ${error.details}`);
  }

  if (!reference) return notFoundOk ? 0 : 1;
  return check(predicted.outputs, jacobians, reference, tolerance, notFoundOk ? [] : ['GetModel no_such_model did not answer NOT_FOUND']);
}

// grpc.status maps names to numbers; turn a number back into NOT_FOUND and friends.
function statusName(code) {
  return Object.keys(grpc.status).find((name) => grpc.status[name] === code) || String(code);
}

function signature(tensors) {
  return tensors.map((t) => `${t.name}${shapeText(t.shape)}:${t.dtype}`).join(' ');
}

main().then((code) => process.exit(code), (error) => {
  console.log(`ERROR: ${error.stack || error}`);
  process.exit(2);
});
