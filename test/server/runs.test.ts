import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { RunningServer } from '../../server/http/start.js';
import { api, brokenModel, serverPerSuite, gate, gateWait, isTerminal, txt2img, WsClient, type Frame, type Sandbox } from './helpers.js';

interface Submitted { run_id: string; position: number }
interface Output { node: string; kind: string; name: string; url: string }

describe('runs over HTTP and WebSocket, tiny real models', () => {
  let server: RunningServer;
  let sandbox: Sandbox;
  serverPerSuite((s) => ({ server, sandbox } = s));

  it('runs txt2img: events in order over WS, then the image over HTTP', async () => {
    const ws = await WsClient.connect(server.url, '?client_id=alice');
    try {
      const hello = await ws.waitFor((f) => f.type === 'snapshot');
      assert.deepEqual(hello.runs, []);

      const post = await api<Submitted>(server.url, '/api/runs', { body: { graph: txt2img(), client_id: 'alice' } });
      assert.equal(post.status, 202);
      assert.equal(post.body.position, 0);
      assert.equal(post.headers.get('location'), `/api/runs/${post.body.run_id}`);
      const runId = post.body.run_id;

      const done = await ws.waitFor(isTerminal(runId), 60_000, 'the end of the run');
      assert.equal(done.type, 'done', JSON.stringify(done));
      const frames = ws.forRun(runId);
      const types = frames.map((f) => f.type);
      assert.deepEqual(types.slice(0, 2), ['queued', 'started']);
      assert.equal(types.at(-1), 'done');
      assert.ok(types.indexOf('output') < types.indexOf('done'));

      // Every node that finished had started before, each exactly once.
      const started = new Set<string>();
      for (const f of frames) {
        if (f.type === 'node_started') started.add(f.node as string);
        if (f.type === 'node_done') assert.ok(started.has(f.node as string), `node_done before node_started for ${String(f.node)}`);
      }
      assert.deepEqual([...started].sort(), ['decode', 'model', 'neg', 'noise', 'pos', 'sample', 'save']);
      const samplerStart = frames.findIndex((f) => f.type === 'node_started' && f.node === 'sample');
      const samplerDone = frames.findIndex((f) => f.type === 'node_done' && f.node === 'sample');
      const progressAt = frames.flatMap((f, i) => (f.type === 'progress' ? [i] : []));
      assert.ok(progressAt.every((i) => i > samplerStart && i < samplerDone), 'progress frames come while the sampler runs');

      const progress = frames.filter((f) => f.type === 'progress');
      assert.ok(progress.length >= 1);
      assert.deepEqual(progress.map((f) => f.step), [...progress.map((f) => f.step as number)].sort((a, b) => a - b));
      assert.equal(progress.at(-1)?.step, 4, 'the last step is never throttled away');
      assert.equal(progress.at(-1)?.steps, 4);

      const preview = frames.find((f) => f.type === 'preview');
      assert.ok(preview, 'previewEvery=2 sends previews');
      assert.match(preview.image as string, /^data:image\/png;base64,/);

      const output = frames.find((f) => f.type === 'output')!;
      assert.equal(output.node, 'save');
      const images = output.images as { name: string; url: string }[];
      assert.equal(images.length, 1);
      assert.match(images[0]!.name, /^test_\d{5}\.png$/);

      const outputs = done.outputs as Output[];
      assert.deepEqual(outputs, [{ node: 'save', kind: 'image', name: images[0]!.name, url: images[0]!.url }]);
      const timings = done.timings as { run_ms: number; nodes: Record<string, number> };
      assert.ok(timings.run_ms >= 0);
      assert.ok('sample' in timings.nodes);

      const img = await fetch(server.url + images[0]!.url);
      assert.equal(img.status, 200);
      assert.equal(img.headers.get('content-type'), 'image/png');
      const png = Buffer.from(await img.arrayBuffer());
      assert.deepEqual([...png.subarray(1, 4)], [...Buffer.from('PNG')]);

      const detail = await api<Record<string, unknown>>(server.url, `/api/runs/${runId}`);
      assert.equal(detail.status, 200);
      assert.equal(detail.body.status, 'done');
      assert.deepEqual(detail.body.outputs, outputs);
      assert.equal((detail.body.node_states as Record<string, string>).sample, 'done');
      assert.equal((detail.body.graph as { format: string }).format, 'fusegraph');

      // The PNG carries its graph: the server gives it back.
      const back = await api<{ graph: unknown; issues: unknown[] }>(server.url, '/api/graph-from-png', {
        method: 'POST', raw: png, headers: { 'content-type': 'image/png' },
      });
      assert.equal(back.status, 200);
      assert.deepEqual(back.body.graph, txt2img());
      assert.deepEqual(back.body.issues, []);
    } finally {
      await ws.close();
    }
  });

  it('serves unchanged nodes from the shared cache on the next run', async () => {
    const ws = await WsClient.connect(server.url, '?client_id=bob');
    try {
      const first = await api<Submitted>(server.url, '/api/runs', { body: { graph: txt2img({ seed: 7 }), client_id: 'bob' } });
      await ws.waitFor(isTerminal(first.body.run_id), 60_000);
      const second = await api<Submitted>(server.url, '/api/runs', { body: { graph: txt2img({ seed: 8 }), client_id: 'bob' } });
      const end = await ws.waitFor(isTerminal(second.body.run_id), 60_000);
      assert.equal(end.type, 'done');
      const cached = ws.forRun(second.body.run_id).filter((f) => f.type === 'node_cached').map((f) => f.node);
      assert.ok(cached.includes('pos') && cached.includes('neg'), `prompts unchanged, so cached: ${cached.join(', ')}`);
      assert.ok(!cached.includes('noise') && !cached.includes('sample'), 'a new seed recomputes the latent and the sampler');
      const detail = await api<{ node_states: Record<string, string> }>(server.url, `/api/runs/${second.body.run_id}`);
      assert.equal(detail.body.node_states.pos, 'cached');
      assert.equal(detail.body.node_states.noise, 'done');
    } finally {
      await ws.close();
    }
  });

  it('records a failing node and goes on with the next run', async () => {
    const ws = await WsClient.connect(server.url);
    try {
      ws.send({ type: 'subscribe', runs: 'all' });
      await ws.waitFor((f) => f.type === 'snapshot' && ws.frames.filter((x) => x.type === 'snapshot').length === 2);
      await api(server.url, '/api/queue/pause', { method: 'POST' });
      // Admitted (its folder is complete), but its UNet file is not ONNX: LoadModel fails at run time.
      const bad = await api<Submitted>(server.url, '/api/runs', { body: { graph: txt2img({ model: await brokenModel(sandbox, 'broken') }) } });
      const good = await api<Submitted>(server.url, '/api/runs', { body: { graph: txt2img({ seed: 3 }) } });
      assert.equal(bad.status, 202);
      assert.equal(good.body.position, 1);
      await api(server.url, '/api/queue/resume', { method: 'POST' });

      const failed = await ws.waitFor(isTerminal(bad.body.run_id), 60_000);
      assert.equal(failed.type, 'error');
      assert.equal(failed.node, 'model');
      assert.equal(failed.code, 'model_missing', 'its model could not be loaded');
      assert.ok(typeof failed.message === 'string' && failed.message.length > 0);
      const detail = await api<{ status: string; error: { node: string; message: string } }>(server.url, `/api/runs/${bad.body.run_id}`);
      assert.equal(detail.body.status, 'error');
      assert.equal(detail.body.error.node, 'model');

      const next = await ws.waitFor(isTerminal(good.body.run_id), 60_000);
      assert.equal(next.type, 'done');
    } finally {
      await ws.close();
      await rm(path.join(sandbox.modelsRoot, 'broken'), { recursive: true, force: true });
    }
  });

  it('cancels a queued run and aborts a running one', async () => {
    const ws = await WsClient.connect(server.url, '?client_id=carol');
    try {
      await api(server.url, '/api/queue/pause', { method: 'POST' });
      const queued = await api<Submitted>(server.url, '/api/runs', { body: { graph: txt2img(), client_id: 'carol' } });
      const cancelQueued = await api<{ status: string }>(server.url, `/api/runs/${queued.body.run_id}`, { method: 'DELETE' });
      assert.equal(cancelQueued.status, 200);
      assert.equal(cancelQueued.body.status, 'cancelled');
      await ws.waitFor((f) => f.type === 'cancelled' && f.run_id === queued.body.run_id);
      await api(server.url, '/api/queue/resume', { method: 'POST' });

      // Held by the step gate after its first step, so the run is certainly still going when the DELETE arrives.
      await gate(server.url, { hold: true, release_steps: 1 });
      const long = await api<Submitted>(server.url, '/api/runs', {
        body: { graph: txt2img({ steps: 20, seed: 99 }), client_id: 'carol' },
      });
      const runId = long.body.run_id;
      const held = await gateWait(server.url, { waiting: 1 });
      assert.deepEqual(held.waiting, [{ node: 'sample', step: 2, steps: 20 }]);
      await ws.waitFor((f) => f.type === 'progress' && f.run_id === runId, 60_000, 'the first step');
      const del = await api<{ status: string; cancel_requested: boolean }>(server.url, `/api/runs/${runId}`, { method: 'DELETE' });
      assert.equal(del.status, 202);
      assert.equal(del.body.cancel_requested, true);
      const end = await ws.waitFor(isTerminal(runId), 30_000);
      assert.equal(end.type, 'cancelled');
      const detail = await api<{ status: string; node_states: Record<string, string> }>(server.url, `/api/runs/${runId}`);
      assert.equal(detail.body.status, 'cancelled');
      assert.equal(detail.body.node_states.sample, 'cancelled');
      assert.equal(detail.body.node_states.noise, 'done');
      const again = await api<{ error: string }>(server.url, `/api/runs/${runId}`, { method: 'DELETE' });
      assert.equal(again.status, 409);
      assert.equal(again.body.error, 'run_finished');
      const steps = ws.forRun(runId).filter((f) => f.type === 'progress').map((f) => f.step as number);
      assert.deepEqual(steps, [1], 'stopped where the gate held it');
      assert.deepEqual((await gate(server.url, { hold: false })).waiting, [], 'the cancelled step left the gate');
    } finally {
      await gate(server.url, { hold: false });
      await ws.close();
    }
  });

  it('sends the same run to two clients, previews only to the one that wants them', async () => {
    const a = await WsClient.connect(server.url, '?client_id=dave');
    const b = await WsClient.connect(server.url);
    try {
      b.send({ type: 'subscribe', runs: 'all', previews: false });
      await b.waitFor((f) => f.type === 'snapshot' && b.frames.filter((x) => x.type === 'snapshot').length === 2);
      const post = await api<Submitted>(server.url, '/api/runs', { body: { graph: txt2img({ seed: 21 }), client_id: 'dave' } });
      const runId = post.body.run_id;
      const [endA, endB] = await Promise.all([a.waitFor(isTerminal(runId), 60_000), b.waitFor(isTerminal(runId), 60_000)]);
      assert.equal(endA.type, 'done');
      assert.deepEqual(endB, endA);
      const kinds = (c: WsClient): string[] => c.forRun(runId).map((f: Frame) => f.type);
      assert.ok(kinds(a).includes('preview'));
      assert.ok(!kinds(b).includes('preview'));
      assert.deepEqual(kinds(a).filter((t) => t !== 'preview'), kinds(b));
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('lists runs newest first, with paging, and shows the queue', async () => {
    const page1 = await api<{ runs: { id: string; created_at: number }[]; next_before: string | null }>(server.url, '/api/runs?limit=2');
    assert.equal(page1.status, 200);
    assert.equal(page1.body.runs.length, 2);
    assert.ok(page1.body.next_before);
    const page2 = await api<{ runs: { id: string; created_at: number }[] }>(server.url, `/api/runs?limit=2&before=${page1.body.next_before}`);
    assert.equal(page2.body.runs.length, 2);
    const all = [...page1.body.runs, ...page2.body.runs];
    assert.equal(new Set(all.map((r) => r.id)).size, 4);
    for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]!.created_at >= all[i]!.created_at);
    assert.ok(!('graph' in page1.body.runs[0]!), 'lists leave the graph out');

    const bad = await api(server.url, '/api/runs?limit=0');
    assert.equal(bad.status, 400);
    const queue = await api<{ paused: boolean; running: unknown[]; pending: unknown[]; concurrency: number }>(server.url, '/api/queue');
    assert.deepEqual(queue.body, { paused: false, concurrency: 1, running: [], pending: [] });
  });

  it('lists nodes and models', async () => {
    const nodes = await api<{ version: number; nodes: { type: string }[] }>(server.url, '/api/nodes');
    assert.equal(nodes.body.version, 1);
    assert.ok(nodes.body.nodes.some((n) => n.type === 'DDIMStep'));
    const models = await api<{ models: { path: string }[] }>(server.url, '/api/models');
    assert.equal(models.status, 200);
    assert.deepEqual(models.body.models.map((m) => m.path), ['tiny']);
  });
});
