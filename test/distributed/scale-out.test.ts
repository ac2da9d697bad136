import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cp } from 'node:fs/promises';
import path from 'node:path';
import type { RunningServer } from '../../server/http/start.js';
import { REPO_ROOT } from '../helpers/graphs.js';
import { api, gate, gateWait, isTerminal, makeSandbox, startIn, txt2img, WsClient, type Frame, type Sandbox } from '../server/helpers.js';
import type { RunSummary } from '../../nodes/protocol.js';
import { demoGraph, startRedis, startWorker, workersUntil, type TestRedis, type WorkerProcess, redisSuiteSkip } from './helpers.js';

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47]);

/** What must match between local and remote execution: every frame but the time-throttled progress, without timings. */
function shape(frames: readonly Frame[]): string[] {
  return frames
    .filter((f) => f.type !== 'progress')
    .map((f) => [f.type, f.node ?? '', f.type === 'preview' ? `${String(f.step)}/${String(f.steps)}` : '', f.type === 'output' ? (f.images as unknown[]).length : ''].join(' ').trim());
}

async function runToEnd(base: string, ws: WsClient, graph: unknown, clientId: string): Promise<{ id: string; frames: Frame[]; end: Frame }> {
  const post = await api<{ run_id: string }>(base, '/api/runs', { body: { graph, client_id: clientId } });
  assert.equal(post.status, 202, JSON.stringify(post.body));
  const end = await ws.waitFor(isTerminal(post.body.run_id), 90_000, `end of ${post.body.run_id}`);
  return { id: post.body.run_id, frames: ws.forRun(post.body.run_id), end };
}

async function assertServed(base: string, outputs: readonly { url: string }[]): Promise<void> {
  for (const o of outputs) {
    const res = await fetch(base + o.url);
    assert.equal(res.status, 200, o.url);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()).subarray(0, 4), PNG, `${o.url} is a PNG`);
  }
}

describe('scale-out: an API node and two worker processes on one Redis', { skip: redisSuiteSkip('scale-out: an API node and two worker processes on one Redis') }, () => {
  let redis: TestRedis;
  let sandbox: Sandbox;
  let server: RunningServer;
  // a serves the repo's models (models/demo); b serves the demo models too, plus the sandbox's tiny model.
  let a: WorkerProcess;
  let b: WorkerProcess;

  const startApi = (): Promise<RunningServer> => startIn(sandbox, { redis: redis.url });

  before(async () => {
    redis = await startRedis();
    sandbox = await makeSandbox();
    // A copy, as on another machine (the model scan does not descend into symlinked folders).
    for (const m of ['general', 'cartoon']) await cp(path.join(REPO_ROOT, 'models', 'demo', m), path.join(sandbox.modelsRoot, 'demo', m), { recursive: true });
    // b also holds a checkpoint file: runs naming it go to b, which builds it into its own --data.
    await cp(path.join(REPO_ROOT, 'test', 'fixtures', 'checkpoints', 'tiny-sd1.ckpt'), path.join(sandbox.modelsRoot, 'checkpoints', 'tiny-sd1.ckpt'));
    server = await startApi();
    [a, b] = await Promise.all([
      startWorker(redis.url, { name: 'a', models: path.join(REPO_ROOT, 'models'), out: path.join(sandbox.root, 'out-a'), extra: ['--data', path.join(sandbox.root, 'data-a')] }),
      startWorker(redis.url, { name: 'b', models: sandbox.modelsRoot, out: path.join(sandbox.root, 'out-b'), extra: ['--data', path.join(sandbox.root, 'data-b')] }),
    ]);
    await workersUntil(server.url, (w) => w.length === 2);
  });

  after(async () => {
    await server?.close();
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
    await sandbox?.remove();
  });

  it('sends the same WebSocket frames, in the same order, as local execution', async () => {
    const local = await startIn(sandbox, { dataDir: path.join(sandbox.root, 'local-data') });
    let localFrames: Frame[];
    try {
      const ws = await WsClient.connect(local.url, '?client_id=local');
      const run = await runToEnd(local.url, ws, demoGraph(1), 'local');
      assert.equal(run.end.type, 'done');
      localFrames = run.frames;
      await ws.close();
    } finally {
      await local.close();
    }
    const ws = await WsClient.connect(server.url, '?client_id=remote');
    try {
      const run = await runToEnd(server.url, ws, demoGraph(1), 'remote');
      assert.equal(run.end.type, 'done');
      assert.deepEqual(shape(run.frames), shape(localFrames));
      assert.ok(shape(run.frames).some((f) => f.startsWith('preview')), 'previews come through');
      assert.ok(run.frames.some((f) => f.type === 'progress'), 'progress comes through');
      await assertServed(server.url, run.end.outputs as { url: string }[]);
    } finally {
      await ws.close();
    }
  });

  it('runs 6 runs on both workers; the API node serves every image', async () => {
    const before = await workersUntil(server.url, () => true);
    const ws = await WsClient.connect(server.url, '?client_id=six');
    try {
      const ids: string[] = [];
      for (let seed = 10; seed < 16; seed++) {
        const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: demoGraph(seed), client_id: 'six' } });
        assert.equal(post.status, 202);
        ids.push(post.body.run_id);
      }
      const names = new Set<string>();
      for (const id of ids) {
        const end = await ws.waitFor(isTerminal(id), 120_000, `end of ${id}`);
        assert.equal(end.type, 'done', JSON.stringify(end));
        const outputs = end.outputs as { name: string; url: string }[];
        assert.equal(outputs.length, 3);
        for (const o of outputs) names.add(o.name);
        await assertServed(server.url, outputs);
      }
      assert.equal(names.size, 18, 'every image has its own file on the API node');
      const after = await workersUntil(server.url, (w) => w.every((x) => x.running.length === 0));
      const done = (name: string, list: typeof after) => list.find((w) => w.name === name)!.runs_done;
      assert.ok(done('a', after) > done('a', before), 'worker a ran some');
      assert.ok(done('b', after) > done('b', before), 'worker b ran some');
      assert.equal(done('a', after) + done('b', after) - done('a', before) - done('b', before), 6);
    } finally {
      await ws.close();
    }
  });

  it('routes a run only to a worker that has its models, and refuses one no worker has', async () => {
    const models = await api<{ models: { path: string; workers: string[] }[] }>(server.url, '/api/models');
    assert.deepEqual(models.body.models.find((m) => m.path === 'tiny')?.workers, ['b']);
    assert.deepEqual(models.body.models.find((m) => m.path === 'demo/general')?.workers, ['a', 'b']);

    const before = await workersUntil(server.url, () => true);
    const ws = await WsClient.connect(server.url, '?client_id=route');
    try {
      const runs = await Promise.all([1, 2, 3].map((seed) => runToEnd(server.url, ws, txt2img({ seed, steps: 2, size: 32 }), 'route')));
      for (const r of runs) assert.equal(r.end.type, 'done');
    } finally {
      await ws.close();
    }
    const after = await workersUntil(server.url, () => true);
    const done = (name: string, list: typeof after) => list.find((w) => w.name === name)!.runs_done;
    assert.equal(done('a', after), done('a', before), 'a, without the tiny model, took none');
    assert.equal(done('b', after), done('b', before) + 3);

    const refused = await api<{ error: string; issues: { node: string; field: string; code: string }[] }>(server.url, '/api/runs', {
      body: { graph: txt2img({ model: 'nowhere' }) },
    });
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error, 'invalid_graph');
    assert.deepEqual(refused.body.issues.map((i) => [i.node, i.field, i.code]), [['model', 'params.path', 'model_unavailable']]);
  });

  it('routes a run naming a checkpoint file to the worker that has the file, which builds and runs it', async () => {
    const models = await api<{ models: { path: string; kind: string; workers: string[] }[] }>(server.url, '/api/models');
    const ckpt = models.body.models.find((m) => m.path === 'checkpoints/tiny-sd1.ckpt');
    assert.deepEqual([ckpt?.kind, ckpt?.workers], ['checkpoint', ['b']]);
    const before = await workersUntil(server.url, () => true);
    const ws = await WsClient.connect(server.url, '?client_id=ckpt');
    try {
      const run = await runToEnd(server.url, ws, txt2img({ model: 'checkpoints/tiny-sd1.ckpt', steps: 2, size: 16 }), 'ckpt');
      assert.equal(run.end.type, 'done', JSON.stringify(run.end));
    } finally {
      await ws.close();
    }
    const after = await workersUntil(server.url, () => true);
    const done = (name: string, list: typeof after) => list.find((w) => w.name === name)!.runs_done;
    assert.equal(done('b', after), done('b', before) + 1);
  });

  it('cancels a run running on a worker within 2 s', async () => {
    const ws = await WsClient.connect(server.url, '?client_id=cancel');
    try {
      await gate(server.url, { hold: true, release_steps: 1 });
      const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: demoGraph(30), client_id: 'cancel' } });
      await gateWait(server.url, { waiting: 1 });
      const t0 = Date.now();
      const del = await api<RunSummary>(server.url, `/api/runs/${post.body.run_id}`, { method: 'DELETE' });
      assert.equal(del.status, 202);
      const end = await ws.waitFor(isTerminal(post.body.run_id), 10_000);
      const ms = Date.now() - t0;
      assert.equal(end.type, 'cancelled');
      assert.ok(ms < 2000, `cancelled after ${ms} ms`);
      const run = await api<RunSummary>(server.url, `/api/runs/${post.body.run_id}`);
      assert.equal(run.body.status, 'cancelled');
    } finally {
      await gate(server.url, { hold: false });
      await ws.close();
    }
  });

  it('goes on with a running run across an API node restart', async () => {
    const before = await workersUntil(server.url, () => true);
    await gate(server.url, { hold: true, release_steps: 2 });
    const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: demoGraph(40), client_id: 'restart' } });
    const id = post.body.run_id;
    const held = await gateWait(server.url, { waiting: 1 });
    assert.equal(held.waiting.length, 1);
    await server.close();

    server = await startApi();
    const ws = await WsClient.connect(server.url, '?client_id=restart');
    try {
      await gate(server.url, { hold: false });
      const end = await ws.waitFor(isTerminal(id), 60_000);
      assert.equal(end.type, 'done', JSON.stringify(end));
      const outputs = end.outputs as { url: string }[];
      assert.equal(outputs.length, 3);
      await assertServed(server.url, outputs);
    } finally {
      await ws.close();
    }
    const after = await workersUntil(server.url, (w) => w.every((x) => x.running.length === 0));
    const total = (list: typeof after) => list.reduce((s, w) => s + w.runs_done, 0);
    assert.equal(total(after), total(before) + 1, 'the run was not started over on a worker');
  });

  it('retries the run of a worker killed with -9 on the other worker, recording its outputs once', async () => {
    await gate(server.url, { hold: true, release_steps: 2 });
    const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: demoGraph(50), client_id: 'kill' } });
    const id = post.body.run_id;
    const held = await gateWait(server.url, { waiting: 1 });
    const victim = (held.waiting[0] as { worker?: string }).worker === 'a' ? a : b;
    const survivor = victim === a ? b : a;
    const ws = await WsClient.connect(server.url, '?client_id=kill');
    try {
      await victim.kill9();
      await gate(server.url, { hold: false });
      const end = await ws.waitFor(isTerminal(id), 60_000);
      assert.equal(end.type, 'done', JSON.stringify(end));
      const run = await api<RunSummary>(server.url, `/api/runs/${id}`);
      assert.equal(run.body.outputs.length, 3, `outputs recorded once: ${JSON.stringify(run.body.outputs)}`);
      assert.equal(new Set(run.body.outputs.map((o) => o.node)).size, 3);
      await assertServed(server.url, run.body.outputs);
      assert.equal(run.body.worker, survivor.name, 'the run records the worker that finished it');
      const workers = await workersUntil(server.url, (w) => w.length === 1);
      assert.equal(workers[0]!.name, survivor.name);
    } finally {
      await ws.close();
    }
  });

  it('reconnects the API node and the worker by themselves after a Redis restart', async () => {
    await redis.restart();
    // The restarted Redis persisted nothing: the worker's next heartbeat announces it again.
    await workersUntil(server.url, (w) => w.length === 1);
    const ws = await WsClient.connect(server.url, '?client_id=redis-restart');
    try {
      const run = await runToEnd(server.url, ws, demoGraph(60), 'redis-restart');
      assert.equal(run.end.type, 'done', JSON.stringify(run.end));
      await assertServed(server.url, run.end.outputs as { url: string }[]);
    } finally {
      await ws.close();
    }
  });
});

describe('scale-out: serve --redis --local-worker, on a Redis with a password', { skip: redisSuiteSkip('scale-out: serve --redis --local-worker, on a Redis with a password') }, () => {
  it('runs a worker inside the API node', async () => {
    const redis = await startRedis({ password: 's3cret/pass' });
    const sandbox = await makeSandbox();
    try {
      const wrong = redis.url.replace(encodeURIComponent('s3cret/pass'), 'wrong');
      await assert.rejects(startIn(sandbox, { redis: wrong }), /WRONGPASS|invalid password|NOAUTH/i, 'a wrong password stops the start');
      const server = await startIn(sandbox, { redis: redis.url, localWorker: true, threads: 1 });
      try {
        const workers = await workersUntil(server.url, (w) => w.length === 1);
        assert.equal(workers[0]!.name, 'local');
        const ws = await WsClient.connect(server.url, '?client_id=local-worker');
        try {
          const run = await runToEnd(server.url, ws, txt2img({ steps: 2, size: 32 }), 'local-worker');
          assert.equal(run.end.type, 'done', JSON.stringify(run.end));
          await assertServed(server.url, run.end.outputs as { url: string }[]);
          assert.equal((await api<RunSummary>(server.url, `/api/runs/${run.id}`)).body.worker, 'local');
        } finally {
          await ws.close();
        }
      } finally {
        await server.close();
      }
    } finally {
      await redis.stop();
      await sandbox.remove();
    }
  });
});
