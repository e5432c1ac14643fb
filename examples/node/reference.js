// The examples' made-up inputs, and their check against a reference file (tests/fixtures/reference/*.json): every
// output and every (wrt, output) Jacobian must match, max |got - ref| <= tolerance * max |ref| per tensor (the server
// computes in float32, the reference is float64). Shared by jacclient.js (gRPC) and oip_rest.js (the Open Inference
// Protocol over HTTP).
'use strict';

const fs = require('fs');

// A reference that is all zeros would otherwise demand bit-exact zeros from float32 arithmetic.
const ABSOLUTE_FLOOR = 1e-7;

// outputs: name -> {shape, data}; jacobians: "d<out>/d<wrt>" -> {shape, data}; problems: what already went wrong.
// Prints a line per tensor and returns the exit status: 0 no problem and everything matched, 1 otherwise.
function check(outputs, jacobians, reference, tolerance, problems) {
  const failures = [...problems];
  const expected = Object.keys(reference.outputs).sort()
    .map((name) => [name, outputs[name], reference.outputs[name]]);
  for (const wrt of Object.keys(reference.jacobians).sort()) {
    for (const out of Object.keys(reference.jacobians[wrt]).sort()) {
      const label = `d${out}/d${wrt}`;
      expected.push([label, jacobians[label], reference.jacobians[wrt][out]]);
    }
  }
  for (const [label, got, want] of expected) {
    const [ok, detail] = compare(got, want, tolerance);
    console.log(`${ok ? 'match' : 'MISMATCH'} ${label}: ${detail}`);
    if (!ok) failures.push(`${label}: ${detail}`);
  }
  if (failures.length > 0) {
    console.log(`FAIL: ${failures.length} problem(s) against ${reference.path}:`);
    for (const f of failures) console.log(`  ${f}`);
    return 1;
  }
  console.log(`PASS: ${expected.length} outputs and Jacobians of ${reference.model} match ${reference.path} ` +
    `(max abs error <= ${tolerance} x largest |reference| entry)`);
  return 0;
}

// [true, the error] if got (a Tensor) matches want (a reference tensor); otherwise [false, what differs].
function compare(got, want, tolerance) {
  if (!got) return [false, 'missing from the response'];
  if (shapeText(got.shape) !== shapeText(want.shape)) {
    return [false, `shape ${shapeText(got.shape)}, expected ${shapeText(want.shape)}`];
  }
  if (got.data.length !== want.data.length) {
    return [false, `${got.data.length} values, expected ${want.data.length}`];
  }
  let largest = 0;
  let worst = 0;
  let worstAt = 0;
  want.data.forEach((w, i) => {
    largest = Math.max(largest, Math.abs(w));
    const error = Math.abs(got.data[i] - w);
    if (error > worst || Number.isNaN(error)) [worst, worstAt] = [error, i];
  });
  const allowed = Math.max(tolerance * largest, ABSOLUTE_FLOOR);
  const ok = worst <= allowed; // false for NaN too
  return [ok, `max abs error ${worst.toPrecision(3)} at flat index ${worstAt}, allowed ${allowed.toPrecision(3)}`];
}

function loadReference(file) {
  const reference = JSON.parse(fs.readFileSync(file, 'utf8'));
  reference.path = file;
  return reference;
}

// Small deterministic values in [-0.3, 0.3] shaped like the model's inputs, with `batch` samples.
function madeUpInputs(info, batch) {
  const inputs = {};
  for (const t of info.inputs) {
    if (t.shape.slice(1).includes(-1)) {
      throw new Error(`input ${t.name} has a dynamic axis besides the batch; pass --reference`);
    }
    const shape = [batch, ...t.shape.slice(1)];
    const size = shape.reduce((a, b) => a * b, 1);
    inputs[t.name] = { shape, data: Array.from({ length: size }, (_, i) => 0.1 * ((i % 7) - 3)) };
  }
  return inputs;
}

function shapeText(shape) {
  return `[${shape.join(', ')}]`;
}

function preview(data, count = 4) {
  const shown = data.slice(0, count).map((v) => Number(v.toPrecision(6))).join(', ');
  return `[${shown}${data.length > count ? ', ...' : ''}]`;
}

module.exports = { check, loadReference, madeUpInputs, shapeText, preview };
