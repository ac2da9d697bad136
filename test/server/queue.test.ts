import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { RunningServer } from '../../server/http/start.js';
import { api, gate, gateWait, isTerminal, makeSandbox, startIn, txt2img, WsClient, type Sandbox } from './helpers.js';

describe('queue with concurrency 2', () => {
  let sandbox: Sandbox;
  let server: RunningServer;

  before(async () => {
    sandbox = await makeSandbox();
    server = await startIn(sandbox, { concurrency: 2 });
  });

  after(async () => {
    await server?.close();
    await sandbox?.remove();
  });

  it('runs two at once, FIFO, and a pause lets running runs finish', async () => {
    const ws = await WsClient.connect(server.url);
    try {
      ws.send({ type: 'subscribe', runs: 'all', previews: false });
      await ws.waitFor((f) => f.type === 'snapshot' && ws.frames.filter((x) => x.type === 'snapshot').length === 2);
      await api(server.url, '/api/queue/pause', { method: 'POST' });
      const ids: string[] = [];
      for (const seed of [1, 2, 3]) {
        const post = await api<{ run_id: string; position: number }>(server.url, '/api/runs', {
          body: { graph: txt2img({ steps: 6, seed }) },
        });
        assert.equal(post.body.position, seed - 1);
        ids.push(post.body.run_id);
      }
      const [a, b, c] = ids as [string, string, string];
      // The gate holds both runs at their first step, so both are certainly running when the queue is read.
      await gate(server.url, { hold: true });
      await api(server.url, '/api/queue/resume', { method: 'POST' });
      await ws.waitFor((f) => f.type === 'started' && f.run_id === b);
      assert.equal((await gateWait(server.url, { waiting: 2 })).waiting.length, 2);
      const queue = await api<{ running: { id: string }[]; pending: { id: string; position: number }[] }>(server.url, '/api/queue');
      assert.deepEqual(queue.body.running.map((r) => r.id).sort(), [a, b].sort());
      assert.deepEqual(queue.body.pending.map((r) => [r.id, r.position]), [[c, 0]]);

      await api(server.url, '/api/queue/pause', { method: 'POST' });
      await gate(server.url, { hold: false });
      const [endA, endB] = await Promise.all([ws.waitFor(isTerminal(a), 60_000), ws.waitFor(isTerminal(b), 60_000)]);
      assert.equal(endA.type, 'done');
      assert.equal(endB.type, 'done');
      assert.equal(ws.forRun(c).some((f) => f.type === 'started'), false, 'paused: the third waits');

      await api(server.url, '/api/queue/resume', { method: 'POST' });
      assert.equal((await ws.waitFor(isTerminal(c), 60_000)).type, 'done');
    } finally {
      await gate(server.url, { hold: false });
      await ws.close();
    }
  });
});
