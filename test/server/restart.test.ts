import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { RunStore } from '../../server/services/run-store.js';
import { api, gate, gateWait, isTerminal, makeSandbox, startIn, txt2img, WsClient, type Sandbox } from './helpers.js';

interface Summary { id: string; status: string; started_at: number | null }

describe('the queue survives a restart', () => {
  let sandbox: Sandbox;

  before(async () => {
    sandbox = await makeSandbox();
  });

  after(async () => {
    await sandbox?.remove();
  });

  it('keeps a queued run, the pause and the history across a restart', async () => {
    const first = await startIn(sandbox);
    let runId: string;
    try {
      await api(first.url, '/api/queue/pause', { method: 'POST' });
      const post = await api<{ run_id: string }>(first.url, '/api/runs', { body: { graph: txt2img(), client_id: 'frank' } });
      runId = post.body.run_id;
    } finally {
      await first.close();
    }

    const second = await startIn(sandbox);
    try {
      const queue = await api<{ paused: boolean; pending: Summary[] }>(second.url, '/api/queue');
      assert.equal(queue.body.paused, true, 'the pause is remembered');
      assert.deepEqual(queue.body.pending.map((r) => [r.id, r.status]), [[runId, 'queued']]);

      const ws = await WsClient.connect(second.url, '?client_id=frank');
      try {
        await api(second.url, '/api/queue/resume', { method: 'POST' });
        const end = await ws.waitFor(isTerminal(runId), 60_000);
        assert.equal(end.type, 'done');
        const url = (end.outputs as { url: string }[])[0]!.url;
        assert.equal((await fetch(second.url + url)).status, 200);
      } finally {
        await ws.close();
      }
    } finally {
      await second.close();
    }

    const third = await startIn(sandbox);
    try {
      const run = await api<Summary>(third.url, `/api/runs/${runId}`);
      assert.equal(run.body.status, 'done', 'history is kept');
    } finally {
      await third.close();
    }
  });

  it('re-runs from scratch a run that was running at shutdown', async () => {
    const first = await startIn(sandbox);
    let runId: string;
    try {
      const ws = await WsClient.connect(first.url);
      ws.send({ type: 'subscribe', runs: 'all' });
      // Held at its third step by the step gate: certainly running when the server stops.
      await gate(first.url, { hold: true, release_steps: 2 });
      const post = await api<{ run_id: string }>(first.url, '/api/runs', { body: { graph: txt2img({ steps: 8, seed: 42 }) } });
      runId = post.body.run_id;
      await gateWait(first.url, { waiting: 1 });
      await ws.waitFor((f) => f.type === 'progress' && f.run_id === runId, 60_000);
      await ws.close();
    } finally {
      await first.close();
    }

    const second = await startIn(sandbox);
    try {
      const ws = await WsClient.connect(second.url);
      try {
        ws.send({ type: 'subscribe', runs: [runId] });
        const snap = await ws.waitFor((f) => f.type === 'snapshot' && (f.runs as unknown[]).length === 1);
        assert.ok(['queued', 'running'].includes((snap.runs as Summary[])[0]!.status));
        const end = await ws.waitFor(isTerminal(runId), 120_000);
        assert.equal(end.type, 'done');
        const steps = ws.forRun(runId).filter((f) => f.type === 'progress').map((f) => f.step as number);
        assert.equal(steps[0], 1, 'from the first step again');
        assert.equal(steps.at(-1), 8);
      } finally {
        await ws.close();
      }
    } finally {
      await second.close();
    }
  });

  it('gives up on a run that was interrupted too often instead of crash-looping', async () => {
    const dataDir = path.join(sandbox.root, 'crashy');
    const store = new RunStore(dataDir);
    store.insert({ id: 'crashy-run', graph: txt2img(), client_id: null, created_at: Date.now() });
    for (let i = 0; i < 3; i++) store.markStarted('crashy-run', Date.now());
    store.close();

    const server = await startIn(sandbox, { dataDir });
    try {
      const run = await api<Summary & { error: { message: string } }>(server.url, '/api/runs/crashy-run');
      assert.equal(run.body.status, 'error');
      assert.match(run.body.error.message, /3 times/);
    } finally {
      await server.close();
    }
  });
});
