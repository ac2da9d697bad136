import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NodeExecutionError } from '../../server/engine/errors.js';
import { outOfMemory } from '../../server/runtime/out-of-memory.js';
import { SessionError } from '../../server/runtime/session-host.js';
import { toRunError } from '../../server/services/run-error.js';

/** Failures as they really arrive: V8's own RangeErrors, and ONNX Runtime's texts as the session worker reported them. */
const thrown = (f: () => unknown): Error => {
  try {
    f();
  } catch (err) {
    return err as Error;
  }
  throw new Error('did not throw');
};
const ORT_ARENA = "Non-zero status code returned while running Conv node. Name:'/conv_in/Conv_output_0_nchwc' Status Message: " +
  '/onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:360 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, ' +
  'onnxruntime::Stream*) Failed to allocate memory for requested buffer of size 536870912\n';
const ORT_BAD_ALLOC = "Non-zero status code returned while running Mul node. Name:'n_Mul_35' Status Message: std::bad_alloc";

describe('out-of-memory failures', () => {
  it('are recognised through the causes a node error wraps, with the size when the message has it', () => {
    const wrap = (e: Error) => new NodeExecutionError('eps', 'PredictNoise', e.message, e);
    assert.deepEqual(outOfMemory(wrap(new SessionError(ORT_ARENA))), { bytes: 536870912 });
    assert.deepEqual(outOfMemory(wrap(new SessionError(ORT_BAD_ALLOC))), { bytes: null });
    assert.deepEqual(outOfMemory(wrap(thrown(() => new ArrayBuffer(2 ** 50)))), { bytes: null });
    assert.deepEqual(outOfMemory(wrap(thrown(() => new Float32Array(2 ** 33)))), { bytes: null });
  });

  it('are not confused with other failures', () => {
    assert.equal(outOfMemory(new SessionError("Non-zero status code returned while running Concat node. Status Message: Non concat axis dimensions must match")), null);
    assert.equal(outOfMemory(thrown(() => JSON.parse('{'))), null);
    assert.equal(outOfMemory(null), null);
  });

  it('reach clients as "out of memory at node X", without ONNX Runtime\'s internals', () => {
    const err = new NodeExecutionError('eps', 'PredictNoise', ORT_ARENA, new SessionError(ORT_ARENA));
    const e = toRunError(err, (t) => t);
    assert.equal(e.node, 'eps');
    assert.equal(e.node_type, 'PredictNoise');
    assert.match(e.message, /^out of memory at node "eps" \(PredictNoise\) \(512\.0 MiB more could not be allocated\): /);
    assert.doesNotMatch(e.message, /bfc_arena|onnxruntime/);
    // Any other node failure keeps its own message.
    assert.match(toRunError(new NodeExecutionError('eps', 'PredictNoise', 'boom'), (t) => t).message, /boom/);
  });
});
