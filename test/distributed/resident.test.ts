import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { RunningServer } from '../../server/http/start.js';
import { api, gate, gateWait, isTerminal, makeSandbox, startIn, txt2img, WsClient, type Frame, type Sandbox } from '../server/helpers.js';
import type { RunSummary } from '../../nodes/protocol.js';
import { startRedis, startWorker, workersUntil, type TestRedis, type WorkerProcess, redisSuiteSkip } from './helpers.js';

/**
 * Residency preference with real processes: worker a has the tiny model loaded, worker b serves it too but has
 * not loaded it. b is started with a grace far longer than any test waits, so a run b held back wrongly fails the
 * test instead of arriving late.
 */
describe('scale-out: a run goes to a worker that has its models loaded', { skip: redisSuiteSkip('scale-out: a run goes to a worker that has its models loaded') }, () => {
  let redis: TestRedis;
  let sandbox: Sandbox;
  let server: RunningServer;
  let ws: WsClient;
  const workers: WorkerProcess[] = [];
  let seed = 100;

  const start = async (name: string, extra: string[] = []): Promise<WorkerProcess> => {
    const w = await startWorker(redis.url, { name, models: sandbox.modelsRoot, out: path.join(sandbox.root, `out-${name}`), extra });
    workers.push(w);
    return w;
  };

  const submit = async (): Promise<string> => {
    const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: txt2img({ seed: seed++, steps: 2, size: 32 }), client_id: 'resident' } });
    assert.equal(post.status, 202, JSON.stringify(post.body));
    return post.body.run_id;
  };

  const finish = async (id: string): Promise<{ end: Frame; worker: string | null | undefined }> => {
    const end = await ws.waitFor(isTerminal(id), 60_000, `end of ${id}`);
    assert.equal(end.type, 'done', JSON.stringify(end));
    return { end, worker: (await api<RunSummary>(server.url, `/api/runs/${id}`)).body.worker };
  };

  before(async () => {
    redis = await startRedis();
    sandbox = await makeSandbox();
    server = await startIn(sandbox, { redis: redis.url });
    ws = await WsClient.connect(server.url, '?client_id=resident');
    // Only a at first: its run loads the model, which then stays resident on a.
    await start('a');
    await workersUntil(server.url, (w) => w.length === 1);
    assert.equal((await finish(await submit())).worker, 'a');
    await start('b', ['--resident-grace-ms', '600000']);
    await workersUntil(server.url, (w) => w.length === 2 && w.find((x) => x.name === 'a')!.resident.includes('tiny'));
  });

  after(async () => {
    await ws?.close();
    await server?.close();
    for (const w of workers) w.child.kill('SIGCONT');
    await Promise.all(workers.map((w) => w.stop()));
    await redis?.stop();
    await sandbox?.remove();
  });

  it('sends every run to the idle worker that has the model loaded, while another idle worker could run it', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await finish(await submit())).worker, 'a', `run ${i + 1}`);
    const list = await workersUntil(server.url, () => true);
    assert.equal(list.find((w) => w.name === 'b')!.runs_done, 0);
    assert.deepEqual(list.find((w) => w.name === 'b')!.resident, [], 'b never loaded the model');
  });

  it('sends a run to the other worker at once while the resident one is busy', async () => {
    await gate(server.url, { hold: true });
    try {
      const first = await submit();
      const held = await gateWait(server.url, { waiting: 1 });
      assert.deepEqual(held.waiting.map((w) => (w as { worker?: string }).worker), ['a']);
      const second = await submit();
      // b's grace is 10 minutes: only a decision not to wait for a gets the run to b's gate in time.
      const both = await gateWait(server.url, { waiting: 2, timeout_ms: 20_000 });
      assert.deepEqual(both.waiting.map((w) => (w as { worker?: string }).worker).sort(), ['a', 'b']);
      await gate(server.url, { hold: false });
      assert.equal((await finish(first)).worker, 'a');
      assert.equal((await finish(second)).worker, 'b');
    } finally {
      await gate(server.url, { hold: false });
    }
  });

  it('gives a run to a worker without the model after the grace when the resident one stops answering', async () => {
    // b has the model loaded now; c, with a 1 s grace, has not.
    const b = workers.find((w) => w.name === 'b')!;
    await b.stop();
    await start('c', ['--resident-grace-ms', '1000']);
    const list = await workersUntil(server.url, (w) => w.length === 2 && w.some((x) => x.name === 'c'));
    assert.ok(list.find((w) => w.name === 'a')!.resident.includes('tiny'));
    const a = workers.find((w) => w.name === 'a')!;
    a.child.kill('SIGSTOP'); // its last heartbeat still shows it idle with the model loaded, for up to 4 s
    try {
      const t0 = Date.now();
      const run = await finish(await submit());
      assert.equal(run.worker, 'c');
      // c held back for its grace (or until a's heartbeat lapsed, later still) before taking the run.
      assert.ok(Date.now() - t0 >= 1000, `done after ${Date.now() - t0} ms`);
    } finally {
      a.child.kill('SIGCONT');
    }
  });

  it('lets a worker release its models after --unload-idle, which its heartbeat then shows', async () => {
    for (const w of workers) await w.stop();
    await start('e', ['--unload-idle', '0.3']);
    await workersUntil(server.url, (w) => w.length === 1 && w[0]!.name === 'e');
    assert.equal((await finish(await submit())).worker, 'e');
    const [e] = await workersUntil(server.url, (w) => w[0]!.runs_done === 1 && w[0]!.resident.length === 0);
    assert.deepEqual(e!.resident, [], 'the idle worker released the model it loaded');
    assert.equal((await finish(await submit())).worker, 'e', 'and loads it again for the next run');
  });

  it('has a worker refuse, before any step, a run beyond its --max-run-memory, naming the node and field', async () => {
    for (const w of workers) await w.stop();
    await start('f', ['--max-run-memory', '1024']);
    await workersUntil(server.url, (w) => w.length === 1 && w[0]!.name === 'f');
    const id = await submit();
    const end = await ws.waitFor(isTerminal(id), 60_000, `end of ${id}`);
    assert.equal(end.type, 'error', JSON.stringify(end));
    const error = end as { node?: string; field?: string; message?: string };
    assert.equal(error.node, 'noise', JSON.stringify(error));
    assert.equal(error.field, 'params.width');
    assert.match(error.message ?? '', /--max-run-memory/);
  });
});
