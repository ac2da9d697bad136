import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import type { RunningServer } from '../../server/http/start.js';
import { api, serverPerSuite, isTerminal, txt2img, WsClient } from './helpers.js';

describe('WebSocket protocol', () => {
  let server: RunningServer;
  serverPerSuite((s) => ({ server } = s));

  it('answers malformed frames with an error frame and keeps the connection', async () => {
    const ws = await WsClient.connect(server.url);
    try {
      await ws.waitFor((f) => f.type === 'snapshot');
      const bad: (string | Buffer)[] = [
        'not json',
        '42',
        JSON.stringify({ type: 'subscribe' }),
        JSON.stringify({ type: 'subscribe', runs: 'some' }),
        JSON.stringify({ type: 'shout' }),
        JSON.stringify({ type: 'ping', extra: true }),
        Buffer.from([1, 2, 3]),
      ];
      for (const frame of bad) {
        const reply = ws.next((f) => f.type === 'error' || f.type === 'pong');
        ws.ws.send(frame);
        const got = await reply;
        assert.equal(got.type, 'error', String(frame));
        assert.equal(typeof got.message, 'string');
        assert.equal(got.run_id, undefined);
      }
      const pong = ws.next((f) => f.type === 'pong');
      ws.send({ type: 'ping' });
      await pong;
      assert.equal(ws.ws.readyState, WebSocket.OPEN);
    } finally {
      await ws.close();
    }
  });

  it('reports unknown runs on subscribe and snapshots the known ones', async () => {
    await api(server.url, '/api/queue/pause', { method: 'POST' });
    const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: txt2img() } });
    const ws = await WsClient.connect(server.url);
    try {
      const error = ws.next((f) => f.type === 'error');
      const snapshot = ws.next((f) => f.type === 'snapshot');
      // A run named 998 times is one run (named 1,000 times it came back 1,000 times: 271 KB and a stalled loop, #27 item 4).
      ws.send({ type: 'subscribe', runs: [...Array.from({ length: 998 }, () => post.body.run_id), 'nope', 'nope'] });
      assert.equal((await error).message, 'unknown run: nope');
      const runs = (await snapshot).runs as { id: string; status: string; position: number }[];
      assert.deepEqual(runs.map((r) => [r.id, r.status, r.position]), [[post.body.run_id, 'queued', 0]]);

      const unsub = ws.next((f) => f.type === 'pong');
      ws.send({ type: 'unsubscribe', runs: [post.body.run_id] });
      ws.send({ type: 'ping' });
      await unsub;
      const cancelled = await api(server.url, `/api/runs/${post.body.run_id}`, { method: 'DELETE' });
      assert.equal(cancelled.status, 200);
      const pong = ws.next((f) => f.type === 'pong');
      ws.send({ type: 'ping' });
      await pong;
      assert.deepEqual(ws.forRun(post.body.run_id), [], 'no events after unsubscribing');
    } finally {
      await ws.close();
      await api(server.url, '/api/queue/resume', { method: 'POST' });
    }
  });

  it('gives a reconnecting client its runs back and keeps streaming them', async () => {
    await api(server.url, '/api/queue/pause', { method: 'POST' });
    const first = await WsClient.connect(server.url, '?client_id=eve');
    const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: txt2img({ seed: 5 }), client_id: 'eve' } });
    await first.waitFor((f) => f.type === 'queued' && f.run_id === post.body.run_id);
    await first.close();

    const again = await WsClient.connect(server.url, '?client_id=eve');
    try {
      const snapshot = await again.waitFor((f) => f.type === 'snapshot');
      const runs = snapshot.runs as { id: string; status: string }[];
      assert.deepEqual(runs.map((r) => [r.id, r.status]), [[post.body.run_id, 'queued']]);
      await api(server.url, '/api/queue/resume', { method: 'POST' });
      const end = await again.waitFor(isTerminal(post.body.run_id), 60_000);
      assert.equal(end.type, 'done');
      assert.deepEqual(again.forRun(post.body.run_id)[0]?.type, 'started');
    } finally {
      await again.close();
    }
  });

  it('snapshots running runs with their progress on subscribe "all"', async () => {
    const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: txt2img({ steps: 400, size: 512, seed: 11 }) } });
    const watcher = await WsClient.connect(server.url);
    try {
      watcher.send({ type: 'subscribe', runs: 'all' });
      await watcher.waitFor((f) => f.type === 'preview' && f.run_id === post.body.run_id, 60_000);
      const late = await WsClient.connect(server.url);
      try {
        const snap = late.next((f) => f.type === 'snapshot');
        late.send({ type: 'subscribe', runs: 'all' });
        const runs = (await snap).runs as { id: string; status: string; progress: { step: number } | null; preview?: { image: string } }[];
        const run = runs.find((r) => r.id === post.body.run_id);
        assert.equal(run?.status, 'running');
        assert.ok(run?.progress && run.progress.step >= 1);
        assert.match(run?.preview?.image ?? '', /^data:image\/png;base64,/);
      } finally {
        await late.close();
      }
      await api(server.url, `/api/runs/${post.body.run_id}`, { method: 'DELETE' });
      await watcher.waitFor(isTerminal(post.body.run_id), 30_000);
      const progress = watcher.forRun(post.body.run_id).filter((f) => f.type === 'progress').length;
      const stepsDone = Math.max(...watcher.forRun(post.body.run_id).filter((f) => f.type === 'progress').map((f) => f.step as number));
      assert.ok(progress <= stepsDone, 'progress frames are coalesced, never more than steps');
    } finally {
      await watcher.close();
    }
  });

  it('refuses bad upgrades without hurting the server', async () => {
    await assert.rejects(WsClient.connect(server.url, '?client_id=bad%20id'), /400/);
    const wrongPath = new WebSocket(server.url.replace('http', 'ws') + '/socket');
    await new Promise<void>((resolve) => {
      wrongPath.once('unexpected-response', (_req, res) => {
        assert.equal(res.statusCode, 404);
        resolve();
      });
      wrongPath.once('error', () => resolve());
    });
    // A frame over the size limit closes that socket (1009), nothing else.
    const big = await WsClient.connect(server.url);
    const closed = new Promise<number>((resolve) => big.ws.once('close', (code) => resolve(code)));
    big.ws.send('x'.repeat(2 * 1024 * 1024));
    assert.equal(await closed, 1009);
    const ok = await WsClient.connect(server.url);
    const pong = ok.next((f) => f.type === 'pong');
    ok.send({ type: 'ping' });
    await pong;
    await ok.close();
  });
});
