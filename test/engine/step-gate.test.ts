import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RunCancelledError } from '../../server/engine/errors.js';
import { StepGate } from '../../server/engine/step-gate.js';

const at = (step: number) => ({ node: 'sample', step, steps: 9 });

describe('StepGate (test-only)', () => {
  it('is open by default, holds, releases n steps in arrival order, then holds again', async () => {
    const g = new StepGate();
    const signal = new AbortController().signal;
    await g.pass(at(1), signal);
    g.hold();
    const order: number[] = [];
    const p2 = g.pass(at(2), signal).then(() => order.push(2));
    const p3 = g.pass(at(3), signal).then(() => order.push(3));
    assert.deepEqual(g.state().waiting.map((w) => w.step), [2, 3]);
    g.release(1);
    await p2;
    assert.deepEqual(order, [2]);
    assert.deepEqual(g.state().waiting.map((w) => w.step), [3]);
    g.open();
    await p3;
    assert.deepEqual(order, [2, 3]);
    assert.equal(g.state().passed, 3);
  });

  it('rejects a held step with RunCancelledError when its run is aborted, and removes it', async () => {
    const g = new StepGate();
    g.hold();
    const c = new AbortController();
    const held = g.pass(at(1), c.signal);
    await g.until((s) => s.waiting.length === 1, 1000);
    c.abort();
    await assert.rejects(held, RunCancelledError);
    assert.deepEqual(g.state().waiting, []);
  });

  it('until() times out with the state in the message', async () => {
    await assert.rejects(new StepGate().until((s) => s.waiting.length > 0, 10), /within 10 ms/);
  });
});
