import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Graph } from '../../nodes/graph-format.js';
import type { RunEvent } from '../../nodes/protocol.js';
import type { RunningServer } from '../../server/http/start.js';
import {
  FuseGraphClient, FuseGraphError, InvalidGraphError, RunCancelledError, RunFailedError, type RunHandle,
} from '../../sdk/index.js';
import { bundledGraph, REPO_ROOT } from '../helpers/graphs.js';
import { gate, gateWait, isTerminal, makeSandbox, startIn, txt2img, WsClient, type Sandbox } from '../server/helpers.js';
import { tcpProxy, type TcpProxy } from './tcp-proxy.js';

/** The bundled demo fusion graph with fewer sampler steps, so it runs in a moment on the 32×32 demo models. */
function demoFusion(steps: number): Graph {
  const graph = bundledGraph('demo-fusion');
  for (const node of Object.values(graph.nodes)) {
    if (node.type === 'DDIMStep') node.params = { ...node.params, steps };
  }
  return graph;
}

async function collect(handle: RunHandle): Promise<RunEvent[]> {
  const frames: RunEvent[] = [];
  for await (const f of handle.events) frames.push(f);
  return frames;
}

/** Every node that has frames of its own finished (ran or came from the cache) in this stream, in order. */
function assertComplete(frames: readonly RunEvent[], nodes: readonly string[]): void {
  for (const node of nodes) {
    const mine = frames.filter((f) => 'node' in f && f.node === node).map((f) => f.type);
    assert.ok(mine.includes('node_done') || mine.includes('node_cached'), `${node}: ${mine.join(',')}`);
  }
  const types = frames.map((f) => f.type);
  assert.equal(types[0], 'queued');
  assert.equal(types.at(-1), 'done');
  assert.equal(types.filter((t) => t === 'done').length, 1);
  assert.equal(types.filter((t) => t === 'started').length, 1);
  const doneNodes = frames.flatMap((f) => (f.type === 'node_done' ? [f.node] : []));
  assert.equal(new Set(doneNodes).size, doneNodes.length, `no node finishes twice: ${doneNodes.join(',')}`);
}

const TXT2IMG_NODES = ['model', 'pos', 'neg', 'noise', 'sample', 'decode', 'save'];

describe('FuseGraphClient (sdk/)', () => {
  let sandbox: Sandbox;
  let server: RunningServer;
  let proxy: TcpProxy;
  let client: FuseGraphClient;

  before(async () => {
    sandbox = await makeSandbox();
    server = await startIn(sandbox, { modelsRoot: path.join(REPO_ROOT, 'models') });
    proxy = await tcpProxy(server.port);
    client = await FuseGraphClient.connect(proxy.url, { reconnect: { minDelayMs: 20, maxDelayMs: 200 } });
  });

  after(async () => {
    await client?.close();
    await proxy?.close();
    await server?.close();
    await sandbox?.remove();
  });

  it('renders the demo fusion and hands back its images, inline or over HTTP', async () => {
    const progress: number[] = [];
    const handle = client.run(demoFusion(6), { onProgress: (f) => progress.push(f.step) });
    const frames = collect(handle);
    const result = await handle.done;
    assert.equal(result.outputs.filter((o) => o.kind === 'image').length, 3, 'general, expert, fused');
    assert.ok(progress.length > 0);
    const images = await handle.images();
    for (const image of images) {
      assert.deepEqual(Buffer.from(image.bytes), await readFile(path.join(sandbox.outputRoot, image.name)));
    }
    assert.equal((await frames).at(-1)?.type, 'done');

    const inline = client.run(demoFusion(6), { inlineOutputs: true });
    const inlineFrames = await collect(inline);
    const outputs = inlineFrames.filter((f) => f.type === 'output');
    assert.ok(outputs.every((f) => f.images.every((i) => typeof i.data === 'string')), 'bytes came with the frames');
    for (const image of await inline.images()) {
      assert.deepEqual(Buffer.from(image.bytes), await readFile(path.join(sandbox.outputRoot, image.name)));
    }
  });

  it('rejects an invalid graph with issues naming node and field, and validates without running', async () => {
    const bad = txt2img({ model: 'tiny-missing' });
    (bad.nodes.sample!.params as Record<string, unknown>).steps = 5000;
    const handle = client.run(bad);
    const err = await handle.done.then(() => null, (e: unknown) => e);
    assert.ok(err instanceof InvalidGraphError, String(err));
    assert.deepEqual(err.issues.map((i) => [i.node, i.field]), [['sample', 'params.steps']]);
    await assert.rejects(collect(handle), InvalidGraphError);
    assert.deepEqual(await client.validate(bad), err.issues);
    // Once the graph itself is valid, validate makes the run's admission too: the missing model folder, as run refuses it.
    const unavailable = txt2img({ model: 'tiny-missing' });
    const refused = await client.run(unavailable).done.then(() => null, (e: unknown) => e);
    assert.ok(refused instanceof InvalidGraphError, String(refused));
    assert.deepEqual(refused.issues.map((i) => [i.node, i.field, i.code]), [['model', 'params.path', 'model_unavailable']]);
    assert.deepEqual(await client.validate(unavailable), refused.issues);
    assert.deepEqual(await client.validate(txt2img({ model: 'demo/general', size: 32 })), []);
  });

  it('fails a run with a typed error naming the node and field', async () => {
    // Admitted (input files are read when the run reaches them), then LoadLatent finds no file.
    const missing = txt2img({ model: 'demo/general', size: 32 });
    missing.nodes.start = { type: 'LoadLatent', params: { path: 'no-such-latent.npy' } };
    missing.nodes.sample!.inputs!.latent = { node: 'start', output: 'latent' };
    const err = await client.run(missing).done.then(() => null, (e: unknown) => e);
    assert.ok(err instanceof RunFailedError, String(err));
    assert.equal(err.node, 'start');
    assert.equal(err.field, 'params.path');
    assert.equal(err.nodeType, 'LoadLatent');
    assert.equal(err.code, 'node_failed');
  });

  it('cancels a run, by handle and by AbortSignal', async () => {
    await gate(server.url, { hold: true });
    try {
      const handle = client.run(txt2img({ model: 'demo/general', size: 32, seed: 3, steps: 6 }));
      await gateWait(server.url, { waiting: 1 });
      await handle.cancel();
      await assert.rejects(handle.done, RunCancelledError);
      assert.equal((await collect(handle)).at(-1)?.type, 'cancelled');

      const controller = new AbortController();
      const aborted = client.run(txt2img({ model: 'demo/general', size: 32, seed: 4, steps: 6 }), { signal: controller.signal });
      await aborted.accepted;
      controller.abort();
      await assert.rejects(aborted.done, RunCancelledError);
    } finally {
      await gate(server.url, { hold: false });
    }
  });

  it('steers the queue and reads nodes and models', async () => {
    const paused = await client.pause();
    assert.equal(paused.paused, true);
    const queued = client.run(txt2img({ model: 'demo/general', size: 32, seed: 7 }));
    await queued.accepted;
    const cleared = await client.clearQueue();
    assert.deepEqual(cleared.cancelled, [queued.runId]);
    await assert.rejects(queued.done, RunCancelledError);
    assert.equal((await client.resume()).paused, false);
    assert.ok((await client.nodes()).some((d) => d.type === 'BlendNoise'));
    assert.ok((await client.models()).some((m) => m.path === 'demo/general'));
  });

  it('survives a dropped socket mid-run: the stream resumes with nothing missing', async () => {
    let connected: () => void = () => {};
    const client = await FuseGraphClient.connect(proxy.url, {
      reconnect: { minDelayMs: 20, maxDelayMs: 200 },
      onConnectionChange: (state) => state === 'connected' && connected(),
    });
    const nextConnect = () => new Promise<void>((resolve) => {
      connected = resolve;
    });
    await gate(server.url, { hold: true });
    try {
      // Dropped while the run is held; it finishes while the client cannot reach the server.
      const away = client.run(txt2img({ model: 'demo/general', size: 32, seed: 11, steps: 5 }));
      const awayFrames = collect(away);
      await away.accepted;
      await gateWait(server.url, { waiting: 1 });
      const watcher = await WsClient.connect(server.url);
      const sub = watcher.next((f) => f.type === 'snapshot');
      watcher.send({ type: 'subscribe', runs: [away.runId] });
      await sub;
      proxy.block(true);
      assert.ok(proxy.cut() >= 1);
      await gate(server.url, { hold: false });
      await watcher.waitFor(isTerminal(away.runId!), 60_000);
      await watcher.close();
      const reconnectedAway = nextConnect();
      proxy.block(false);
      await reconnectedAway;
      const result = await away.done;
      assertComplete(await awayFrames, TXT2IMG_NODES);
      assert.equal((await awayFrames).filter((f) => f.type === 'output').length, 1);
      assert.equal((await away.images()).length, 1);
      assert.equal(result.outputs.length, 1);
      assert.equal(client.reconnects, 1);

      // Dropped and back before the run moves on: the rest arrives live.
      await gate(server.url, { hold: true });
      const live = client.run(txt2img({ model: 'demo/general', size: 32, seed: 12, steps: 5 }));
      const liveFrames = collect(live);
      await gateWait(server.url, { waiting: 1 });
      const reconnected = nextConnect();
      proxy.cut();
      await reconnected;
      await gate(server.url, { hold: false });
      await live.done;
      const frames = await liveFrames;
      assertComplete(frames, TXT2IMG_NODES);
      assert.ok(frames.some((f) => f.type === 'progress' && f.step === 5), 'live frames after the reconnect');
      assert.equal(client.reconnects, 2);
    } finally {
      await gate(server.url, { hold: false });
      await client.close();
    }
  });

  it('needs the token when the server has one', async () => {
    const guarded = await startIn(sandbox, { dataDir: path.join(sandbox.root, 'data-sdk-token'), token: 'sdk-secret' });
    try {
      await assert.rejects(FuseGraphClient.connect(guarded.url, { reconnect: false }), /could not connect|closed/);
      const ok = await FuseGraphClient.connect(guarded.url, { token: 'sdk-secret' });
      try {
        assert.equal((await ok.pause()).paused, true);
        assert.equal((await ok.resume()).paused, false);
        assert.ok((await ok.nodes()).length > 0);
      } finally {
        await ok.close();
      }
      const closed = await FuseGraphClient.connect(guarded.url, { token: 'sdk-secret' });
      const pending = closed.run(txt2img());
      await closed.close();
      await assert.rejects(pending.done, FuseGraphError);
    } finally {
      await guarded.close();
    }
  });
});
