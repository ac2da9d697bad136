import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { RunningServer } from '../../server/http/start.js';
import { api, serverPerSuite, gate, gateWait, isTerminal, startIn, txt2img, WsClient, type Frame, type Sandbox } from './helpers.js';

/**
 * Enough 30 KB previews (one per step of a 512² txt2img) to pass what the kernel buffers for a socket whose reader
 * stopped: the sender's buffer (tcp_wmem max) and a receive window that does not grow without reads (tcp_rmem
 * default), plus 2 MB, so the server's own backlog must fill.
 */
function stepsToOverflowKernelBuffers(): number {
  const field = (file: string, i: number, fallback: number): number => {
    try {
      return Number(readFileSync(file, 'utf8').trim().split(/\s+/)[i]) || fallback;
    } catch {
      return fallback;
    }
  };
  const kernel = field('/proc/sys/net/ipv4/tcp_wmem', 2, 4 << 20) + 2 * field('/proc/sys/net/ipv4/tcp_rmem', 1, 128 << 10);
  return Math.min(1000, Math.max(400, Math.ceil((kernel + (2 << 20)) / 30_000)));
}

/** Issue #18: the WebSocket alone submits, steers and follows runs. */
describe('WebSocket execution channel', () => {
  let sandbox: Sandbox;
  let server: RunningServer;
  serverPerSuite((s) => ({ sandbox, server } = s));

  it('submits, reorders, cancels, pauses and clears over one socket', async () => {
    const ws = await WsClient.connect(server.url);
    try {
      await ws.waitFor((f) => f.type === 'snapshot');
      const paused = ws.next((f) => f.type === 'queue_state' && f.ref === 'p');
      ws.send({ type: 'queue', action: 'pause', ref: 'p' });
      assert.equal((await paused).paused, true);

      const qa = ws.next((f) => f.type === 'queued' && f.ref === 'a');
      ws.send({ type: 'run', graph: txt2img({ seed: 1 }), ref: 'a' });
      const a = (await qa).run_id as string;
      const qb = ws.next((f) => f.type === 'queued' && f.ref === 'b');
      ws.send({ type: 'run', graph: txt2img({ seed: 2 }), ref: 'b' });
      const b = await qb;
      assert.equal(b.position, 1);
      const qc = ws.next((f) => f.type === 'queued' && f.ref === 'c');
      ws.send({ type: 'run', graph: txt2img({ seed: 3 }), ref: 'c', front: true });
      assert.equal((await qc).position, 0, 'front: ahead of every queued run');
      const c = (await qc).run_id as string;

      const cancelled = ws.next(isTerminal(b.run_id as string));
      ws.send({ type: 'cancel', run_id: b.run_id, ref: 'x' });
      assert.equal((await cancelled).type, 'cancelled');
      const unknown = ws.next((f) => f.type === 'error' && f.ref === 'u');
      ws.send({ type: 'cancel', run_id: 'no-such-run', ref: 'u' });
      assert.match((await unknown).message as string, /no-such-run/);

      const cleared = ws.next((f) => f.type === 'queue_state' && f.ref === 'clr');
      ws.send({ type: 'queue', action: 'clear', ref: 'clr' });
      const state = await cleared;
      assert.deepEqual([...(state.cancelled as string[])].sort(), [a, c].sort());
      assert.deepEqual(state.pending, []);
      await ws.waitFor(isTerminal(a));
      await ws.waitFor(isTerminal(c));

      const resumed = ws.next((f) => f.type === 'queue_state' && f.ref === 'r');
      ws.send({ type: 'queue', action: 'resume', ref: 'r' });
      assert.equal((await resumed).paused, false);
      const qd = ws.next((f) => f.type === 'queued' && f.ref === 'd');
      ws.send({ type: 'run', graph: txt2img({ seed: 4 }), ref: 'd' });
      const d = (await qd).run_id as string;
      const end = await ws.waitFor(isTerminal(d), 60_000);
      assert.equal(end.type, 'done');
      const types = ws.forRun(d).map((f) => f.type);
      assert.deepEqual([types[0], types[1], types.at(-3), types.at(-1)], ['queued', 'started', 'output', 'done']);
      const finished = ws.next((f) => f.type === 'error' && f.ref === 'late');
      ws.send({ type: 'cancel', run_id: d, ref: 'late' });
      assert.match((await finished).message as string, /already finished \(done\)/);
    } finally {
      await ws.close();
      await api(server.url, '/api/queue/resume', { method: 'POST' });
    }
  });

  it('refuses an invalid graph with the same issues as POST /api/runs, queueing nothing', async () => {
    const bad = txt2img();
    (bad.nodes.sample!.params as Record<string, unknown>).steps = 0;
    bad.nodes.extra = { type: 'NoSuchNode' };
    const ws = await WsClient.connect(server.url);
    try {
      const reply = ws.next((f) => f.ref === 'bad');
      ws.send({ type: 'run', graph: bad, ref: 'bad' });
      const frame = await reply;
      assert.equal(frame.type, 'invalid_graph');
      const issues = frame.issues as { node: string | null; field: string | null; code: string }[];
      assert.deepEqual(issues.map((i) => [i.node, i.field, i.code]).sort(), [['extra', 'type', 'unknown_node_type'], ['sample', 'params.steps', 'param_range']]);
      const http = await api<{ issues: unknown[] }>(server.url, '/api/runs', { body: { graph: bad } });
      assert.equal(http.status, 400);
      assert.deepEqual(frame.issues, http.body.issues, 'one validation path for HTTP and WebSocket');
      const queue = await api<{ pending: unknown[]; running: unknown[] }>(server.url, '/api/queue');
      assert.deepEqual([queue.body.pending, queue.body.running], [[], []]);

      const validated = ws.next((f) => f.type === 'validated' && f.ref === 'v');
      ws.send({ type: 'validate', graph: bad, ref: 'v' });
      assert.deepEqual((await validated).issues, frame.issues);
      const ok = ws.next((f) => f.type === 'validated' && f.ref === 'ok');
      ws.send({ type: 'validate', graph: txt2img(), ref: 'ok' });
      assert.deepEqual((await ok).issues, []);
      const noGraph = ws.next((f) => f.ref === 'none');
      ws.send({ type: 'run', graph: null, ref: 'none' });
      assert.equal((await noGraph).type, 'invalid_graph');
    } finally {
      await ws.close();
    }
  });

  it('inlines output bytes equal to the files for the socket that asked, URLs for the others', async () => {
    const ws = await WsClient.connect(server.url);
    const watcher = await WsClient.connect(server.url);
    try {
      const sub = watcher.next((f) => f.type === 'snapshot');
      watcher.send({ type: 'subscribe', runs: 'all' });
      await sub;
      const queued = ws.next((f) => f.type === 'queued' && f.ref === 'inl');
      ws.send({ type: 'run', graph: txt2img({ seed: 21 }), ref: 'inl', inline_outputs: true });
      const runId = (await queued).run_id as string;
      assert.equal((await ws.waitFor(isTerminal(runId), 60_000)).type, 'done');
      await watcher.waitFor(isTerminal(runId), 60_000);
      const output = ws.forRun(runId).find((f) => f.type === 'output')!;
      const images = output.images as { name: string; url: string; data?: string }[];
      assert.equal(images.length, 1);
      const onDisk = await readFile(path.join(sandbox.outputRoot, images[0]!.name));
      const served = Buffer.from(await (await fetch(server.url + images[0]!.url)).arrayBuffer());
      assert.ok(onDisk.length > 0);
      assert.deepEqual(Buffer.from(images[0]!.data!, 'base64'), onDisk);
      assert.deepEqual(served, onDisk);
      const plain = watcher.forRun(runId).find((f) => f.type === 'output')!;
      assert.equal((plain.images as { data?: string }[])[0]!.data, undefined, 'inline only for the socket that asked');
      const types = ws.forRun(runId).map((f) => f.type);
      assert.deepEqual(types.slice(-3), ['output', 'node_done', 'done'], 'the inline output keeps its place');
    } finally {
      await ws.close();
      await watcher.close();
    }
  });

  it('keeps two clients\' runs apart', async () => {
    const one = await WsClient.connect(server.url, '?client_id=one');
    const two = await WsClient.connect(server.url);
    try {
      const q1 = one.next((f) => f.type === 'queued' && f.ref === 'r');
      const q2 = two.next((f) => f.type === 'queued' && f.ref === 'r');
      one.send({ type: 'run', graph: txt2img({ seed: 31 }), ref: 'r' });
      two.send({ type: 'run', graph: txt2img({ seed: 32 }), ref: 'r' });
      const [r1, r2] = [(await q1).run_id as string, (await q2).run_id as string];
      assert.notEqual(r1, r2);
      await one.waitFor(isTerminal(r1), 60_000);
      await two.waitFor(isTerminal(r2), 60_000);
      assert.ok(one.frames.every((f) => f.run_id === undefined || f.run_id === r1), 'client one saw only its run');
      assert.ok(two.frames.every((f) => f.run_id === undefined || f.run_id === r2), 'client two saw only its run');
      const detail = await api<{ client_id: string | null }>(server.url, `/api/runs/${r1}`);
      assert.equal(detail.body.client_id, 'one', 'a WebSocket run belongs to the socket\'s client_id');
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('resumes a run\'s event stream after a reconnect with nothing missing', async () => {
    await gate(server.url, { hold: true });
    let second: WsClient | undefined;
    try {
      const first = await WsClient.connect(server.url, '?client_id=rc');
      const queued = first.next((f) => f.type === 'queued' && f.ref === 'rc');
      first.send({ type: 'run', graph: txt2img({ seed: 41, steps: 6 }), ref: 'rc' });
      const runId = (await queued).run_id as string;
      await gateWait(server.url, { waiting: 1 });
      await first.close();
      const before = first.forRun(runId);

      second = await WsClient.connect(server.url, '?client_id=rc');
      const snapshot = await second.waitFor((f) => f.type === 'snapshot');
      const run = (snapshot.runs as { id: string; status: string; node_states: Record<string, string> }[]).find((r) => r.id === runId);
      assert.equal(run?.status, 'running');
      assert.equal(run?.node_states.sample, 'running');
      await gate(server.url, { hold: false });
      const end = await second.waitFor(isTerminal(runId), 60_000);
      assert.equal(end.type, 'done');
      const all: Frame[] = [...before, ...second.forRun(runId)];
      // PredictNoise (eps) runs inside the sampler's steps and has no frames of its own.
      const nodes = ['model', 'pos', 'neg', 'noise', 'sample', 'decode', 'save'];
      for (const node of nodes) {
        const seen = all.filter((f) => f.node === node).map((f) => f.type);
        assert.ok(seen.includes('node_done') || seen.includes('node_cached'), `${node} finished in the stream: ${seen.join(',')}`);
      }
      assert.equal(all.filter((f) => f.type === 'output').length, 1);
    } finally {
      await gate(server.url, { hold: false });
      await second?.close();
    }
  });

  it('needs the token in a header or an auth frame to run, cancel or steer, as HTTP does', async () => {
    const TOKEN = 'ws-token-1';
    const guarded = await startIn(sandbox, { dataDir: path.join(sandbox.root, 'data-token'), token: TOKEN });
    try {
      const viaQuery = await WsClient.connect(guarded.url, `?token=${TOKEN}`);
      const refused = viaQuery.next((f) => f.ref === 'q');
      viaQuery.send({ type: 'queue', action: 'pause', ref: 'q' });
      assert.equal((await refused).type, 'error');
      const refusedRun = viaQuery.next((f) => f.ref === 'r');
      viaQuery.send({ type: 'run', graph: txt2img(), ref: 'r' });
      assert.match((await refusedRun).message as string, /token/);
      const validated = viaQuery.next((f) => f.ref === 'v');
      viaQuery.send({ type: 'validate', graph: txt2img(), ref: 'v' });
      assert.equal((await validated).type, 'validated', 'reading needs no more than the URL token');
      const authorized = viaQuery.next((f) => f.ref === 'a');
      viaQuery.send({ type: 'auth', token: TOKEN, ref: 'a' });
      assert.equal((await authorized).type, 'authorized');
      const paused = viaQuery.next((f) => f.ref === 'q2');
      viaQuery.send({ type: 'queue', action: 'pause', ref: 'q2' });
      assert.equal((await paused).type, 'queue_state');
      await viaQuery.close();

      const viaHeader = await WsClient.connect(guarded.url, '', { authorization: `Bearer ${TOKEN}` });
      const resumed = viaHeader.next((f) => f.ref === 'q');
      viaHeader.send({ type: 'queue', action: 'resume', ref: 'q' });
      assert.equal((await resumed).type, 'queue_state');
      await viaHeader.close();

      const guesser = await WsClient.connect(guarded.url, `?token=${TOKEN}`);
      const closed = new Promise<number>((resolve) => guesser.ws.once('close', (code) => resolve(code)));
      guesser.send({ type: 'auth', token: 'wrong' });
      assert.equal(await closed, 1008, 'a wrong in-band token closes the socket');
      await guesser.close();
    } finally {
      await guarded.close();
    }
  });

  it('skips previews, never lifecycle frames, for a reader that stops reading, and bounds its backlog', async (t) => {
    const steps = stepsToOverflowKernelBuffers();
    const small = await startIn(sandbox, {
      dataDir: path.join(sandbox.root, 'data-slow'), previewEvery: 1, wsBacklogBytes: 64 * 1024, wsMaxBacklogBytes: 64 * 1024 * 1024,
    });
    try {
      const ws = await WsClient.connect(small.url, '?client_id=slow');
      await ws.waitFor((f) => f.type === 'snapshot');
      const queued = ws.next((f) => f.type === 'queued');
      ws.send({ type: 'run', graph: txt2img({ seed: 51, steps, size: 512 }) });
      const runId = (await queued).run_id as string;
      ws.ws.pause(); // stop reading: the server's send buffers fill
      const watcher = await WsClient.connect(small.url);
      const watched = watcher.next((f) => f.type === 'snapshot');
      watcher.send({ type: 'subscribe', runs: [runId], previews: false });
      await watched;
      await watcher.waitFor(isTerminal(runId), 120_000);
      await watcher.close();
      type Stats = { sockets: { client_id: string; peak_buffered: number; dropped: number }[] };
      const stats = (await api<Stats>(small.url, '/api/test/ws')).body;
      ws.ws.resume();
      const end = await ws.waitFor(isTerminal(runId), 60_000);
      assert.equal(end.type, 'done');
      const mine = stats.sockets.find((s) => s.client_id === 'slow')!;
      const previews = ws.forRun(runId).filter((f) => f.type === 'preview');
      const previewBytes = previews.reduce((n, f) => n + JSON.stringify(f).length, 0) / Math.max(1, previews.length);
      t.diagnostic(`previews delivered ${previews.length} of ${steps} (~${Math.round(previewBytes)} B each), progress/preview frames skipped ` +
        `${mine.dropped}; peak unsent bytes held for the socket ${mine.peak_buffered} (cap 65536)`);
      assert.ok(mine.dropped > 0, 'the stalled socket skipped previews');
      assert.ok(mine.peak_buffered < 64 * 1024 + 2 * previewBytes + 16 * 1024, `backlog stayed near its cap: ${mine.peak_buffered}`);
      const types = ws.forRun(runId).map((f) => f.type).filter((x) => x !== 'progress' && x !== 'preview');
      assert.deepEqual(types.filter((x) => x === 'node_started').length, 7, 'every lifecycle frame arrived');
      assert.deepEqual(types.slice(-3), ['output', 'node_done', 'done']);
      await ws.close();
    } finally {
      await small.close();
    }
  });
});
