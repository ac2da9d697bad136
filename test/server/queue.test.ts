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

  it('steers a paused queue: queue at the front, move a run to the front, clear what is queued', async () => {
    const ws = await WsClient.connect(server.url);
    try {
      ws.send({ type: 'subscribe', runs: 'all', previews: false });
      await api(server.url, '/api/queue/pause', { method: 'POST' });
      const submit = async (seed: number, front = false) =>
        (await api<{ run_id: string; position: number }>(server.url, '/api/runs', { body: { graph: txt2img({ steps: 2, seed }), front } })).body;
      const a = await submit(1);
      const b = await submit(2);
      const c = await submit(3, true);
      assert.equal(c.position, 0, 'queued at the front');
      const order = async () => (await api<{ pending: { id: string; position: number }[] }>(server.url, '/api/queue')).body.pending.map((r) => r.id);
      assert.deepEqual(await order(), [c.run_id, a.run_id, b.run_id]);
      // The runs that moved back learn their new position.
      await ws.waitFor((f) => f.type === 'queued' && f.run_id === a.run_id && f.position === 1);

      const moved = await api<{ id: string; position: number }>(server.url, `/api/runs/${b.run_id}/front`, { method: 'POST' });
      assert.equal(moved.status, 200);
      assert.equal(moved.body.position, 0);
      assert.deepEqual(await order(), [b.run_id, c.run_id, a.run_id]);
      assert.equal((await api(server.url, '/api/runs/nope/front', { method: 'POST' })).status, 404);

      const cleared = await api<{ cancelled: string[] }>(server.url, '/api/queue/clear', { method: 'POST' });
      assert.deepEqual(cleared.body.cancelled.sort(), [a.run_id, b.run_id, c.run_id].sort());
      assert.deepEqual(await order(), []);
      for (const id of cleared.body.cancelled) assert.equal((await ws.waitFor(isTerminal(id))).type, 'cancelled');
      const again = await api(server.url, `/api/runs/${a.run_id}/front`, { method: 'POST' });
      assert.equal(again.status, 409, 'a cancelled run cannot move');
    } finally {
      await api(server.url, '/api/queue/resume', { method: 'POST' });
      await ws.close();
    }
  });
});
