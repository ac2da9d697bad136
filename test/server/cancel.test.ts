import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { Graph } from '../../nodes/graph-format.js';
import type { RunningServer } from '../../server/http/start.js';
import { SESSION_ISOLATIONS } from '../../server/runtime/session-channel.js';
import { txt2imgGraph } from '../helpers/graphs.js';
import { writeTinyModel } from '../../tools/tiny-models/make-tiny-model.js';
import { TOKENIZER_FIXTURE } from '../helpers/graphs.js';
import { api, gate, gateWait, isTerminal, makeSandbox, processGone, serveProcess, sessionProcesses, startIn, txt2img, WsClient, type Sandbox } from './helpers.js';

describe('cancel (issue 14, defect 2 and cancel inside a UNet call)', () => {
  let sandbox: Sandbox;
  before(async () => {
    sandbox = await makeSandbox();
    // A UNet wide and deep enough that one call at 512×512 (256² latent) takes seconds on this machine.
    await writeTinyModel(path.join(sandbox.modelsRoot, 'slow'), { tokenizerDir: TOKENIZER_FIXTURE, vaeFactor: 2, unetWidth: 96, unetDepth: 6 });
  });
  after(async () => {
    await sandbox?.remove();
  });

  it('is durable: a run cancelled while running, then kill -9, ends cancelled after the restart and never runs again', async () => {
    const { url, child, exited } = await serveProcess(sandbox);
    let runId: string;
    try {
      // Held steps ignore the cancel: the run cannot notice it before the kill, so only SQLite knows.
      await gate(url, { hold: true, release_steps: 1, ignore_cancel: true });
      const post = await api<{ run_id: string }>(url, '/api/runs', { body: { graph: txt2img({ steps: 6 }) } });
      runId = post.body.run_id;
      await gateWait(url, { waiting: 1 });
      const del = await api<{ cancel_requested: boolean }>(url, `/api/runs/${runId}`, { method: 'DELETE' });
      assert.equal(del.status, 202);
      const still = await api<{ status: string }>(url, `/api/runs/${runId}`);
      assert.equal(still.body.status, 'running', 'the run had not ended when the server died');
    } finally {
      child.kill('SIGKILL');
      await exited;
    }

    const second = await startIn(sandbox);
    try {
      const ws = await WsClient.connect(second.url);
      try {
        ws.send({ type: 'subscribe', runs: [runId] });
        const snap = await ws.waitFor((f) => f.type === 'snapshot' && (f.runs as unknown[]).length === 1);
        assert.equal((snap.runs as { status: string }[])[0]!.status, 'cancelled');
        const queue = await api<{ running: unknown[]; pending: unknown[] }>(second.url, '/api/queue');
        assert.deepEqual([queue.body.running, queue.body.pending], [[], []], 'nothing re-queued');
        assert.equal(ws.forRun(runId).some((f) => f.type === 'started'), false);
      } finally {
        await ws.close();
      }
    } finally {
      await second.close();
    }
  });

  for (const isolation of SESSION_ISOLATIONS) describe(`inside a long UNet call (--session-isolation ${isolation})`, () => {
    let server: RunningServer;
    before(async () => {
      // The tiny model has no unet/config.json, so admission assumes SD's attention; this test wants the big latent.
      server = await startIn(sandbox, { maxRunMemory: 2 ** 50, sessionIsolation: isolation });
    });
    after(async () => {
      await server?.close();
    });

    it('ends the run within 2 s, and the model still works for the next run', async () => {
      const slow = (size: number, steps: number): Graph => txt2imgGraph('slow', { size, steps });
      const ws = await WsClient.connect(server.url, '?client_id=cancel');
      try {
        // Load the model and measure one call at the big size: the cancel must beat it by far to mean anything.
        const warm = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: slow(512, 1), client_id: 'cancel' } });
        assert.equal(warm.status, 202, JSON.stringify(warm.body));
        assert.equal((await ws.waitFor(isTerminal(warm.body.run_id), 120_000)).type, 'done');
        const detail = await api<{ timings: { nodes: Record<string, number> } }>(server.url, `/api/runs/${warm.body.run_id}`);
        const callMs = detail.body.timings.nodes.sample!;

        await gate(server.url, { hold: true, release_steps: 1 });
        const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: slow(512, 3), client_id: 'cancel' } });
        assert.equal(post.status, 202);
        const runId = post.body.run_id;
        // Step 1 passed the gate: its UNet call is under way; step 2 would wait at the gate after it.
        await gateWait(server.url, { passed: 1 + 1 });
        const computing = await sessionProcesses(process.pid);
        assert.equal(computing.length, isolation === 'process' ? 1 : 0, 'a session process for the slow model alone');
        const t0 = performance.now();
        const del = await api(server.url, `/api/runs/${runId}`, { method: 'DELETE' });
        assert.equal(del.status, 202);
        const end = await ws.waitFor(isTerminal(runId), 30_000);
        const cancelMs = performance.now() - t0;
        assert.equal(end.type, 'cancelled');
        assert.deepEqual(ws.forRun(runId).filter((f) => f.type === 'progress'), [], 'cancelled inside the first UNet call');
        assert.ok(cancelMs < 2000, `cancel took ${cancelMs.toFixed(0)} ms (one UNet call takes ${callMs.toFixed(0)} ms)`);
        // With a process, the call itself stopped, not just the wait on it: the process computing it is gone (a
        // worker thread finishes the call in the background).
        if (isolation === 'process') await processGone(computing[0]!, 2000);
        await gate(server.url, { hold: false });

        const next = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: slow(32, 2), client_id: 'cancel' } });
        assert.equal((await ws.waitFor(isTerminal(next.body.run_id), 120_000)).type, 'done', 'a new worker took over');
        if (isolation === 'process') {
          const now = await sessionProcesses(process.pid);
          assert.equal(now.length, 1);
          assert.notEqual(now[0], computing[0], 'a new session process');
        }
        console.log(`# one UNet call ${callMs.toFixed(0)} ms; cancel inside it ended the run in ${cancelMs.toFixed(0)} ms`);
      } finally {
        await gate(server.url, { hold: false });
        await ws.close();
      }
    });
  });
});
