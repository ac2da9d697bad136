import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { RunningServer } from '../../server/http/start.js';
import { routeOf } from '../../server/services/distributed/routing.js';
import { api, isTerminal, makeSandbox, startIn, TINY_MODEL, txt2img, WsClient, type Sandbox } from '../server/helpers.js';
import { startRedis, workersUntil, type TestRedis, redisSuiteSkip } from './helpers.js';

const TOKEN = 'admin-test-token';
const auth = { authorization: `Bearer ${TOKEN}` };

interface BoardQueues {
  queues: { name: string; readOnlyMode: boolean; counts: Record<string, number> }[];
}

describe('scale-out: the BullMQ dashboard at /admin/queues', { skip: redisSuiteSkip('scale-out: the BullMQ dashboard at /admin/queues') }, () => {
  let redis: TestRedis;
  let sandbox: Sandbox;
  let server: RunningServer;

  before(async () => {
    redis = await startRedis();
    sandbox = await makeSandbox();
    server = await startIn(sandbox, { redis: redis.url, token: TOKEN, localWorker: true, threads: 1 });
  });

  after(async () => {
    await server?.close();
    await redis?.stop();
    await sandbox?.remove();
  });

  it('is behind the API token, and lists the run queue of a model set once a run used it', async () => {
    assert.equal((await fetch(`${server.url}/admin/queues`)).status, 401);
    assert.equal((await fetch(`${server.url}/admin/queues`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
    assert.equal((await fetch(`${server.url}/admin/queues/api/queues`)).status, 401);
    const page = await fetch(`${server.url}/admin/queues`, { headers: auth });
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /html/);

    await workersUntil(server.url, (w) => w.length === 1, 30_000, auth);
    const ws = await WsClient.connect(server.url, `?client_id=admin&token=${TOKEN}`);
    try {
      const post = await api<{ run_id: string }>(server.url, '/api/runs', { headers: auth, body: { graph: txt2img({ steps: 2, size: 32 }), client_id: 'admin' } });
      assert.equal(post.status, 202, JSON.stringify(post.body));
      assert.equal((await ws.waitFor(isTerminal(post.body.run_id), 60_000)).type, 'done');
    } finally {
      await ws.close();
    }

    const queue = routeOf([TINY_MODEL]).queue;
    const listed = await api<BoardQueues>(server.url, '/admin/queues/api/queues', { headers: auth });
    assert.equal(listed.status, 200);
    const entry = listed.body.queues.find((q) => q.name === queue);
    assert.ok(entry, `${queue} in ${JSON.stringify(listed.body.queues.map((q) => q.name))}`);
    assert.equal(entry.readOnlyMode, true);
    assert.equal(entry.counts.completed, 1);
    // Read-only: the SQLite run queue stays the one place runs change.
    const pause = await fetch(`${server.url}/admin/queues/api/queues/${queue}/pause`, { method: 'PUT', headers: auth });
    assert.ok(pause.status >= 400, `pause answered ${pause.status}`);
  });

  it('lets a browser that opened it with ?token= load its data with the cookie it set', async () => {
    const page = await fetch(`${server.url}/admin/queues?token=${TOKEN}`);
    assert.equal(page.status, 200);
    const cookie = (page.headers.get('set-cookie') ?? '').split(';')[0]!;
    assert.match(page.headers.get('set-cookie') ?? '', /HttpOnly; SameSite=Strict/);
    assert.ok(!cookie.includes(TOKEN), 'the cookie does not carry the token itself');
    assert.equal((await fetch(`${server.url}/admin/queues/api/queues`, { headers: { cookie } })).status, 200);
    assert.equal((await fetch(`${server.url}/admin/queues/api/queues`, { headers: { cookie: 'fusegraph_admin=forged' } })).status, 401);
    assert.equal((await fetch(`${server.url}/api/queue`, { headers: { cookie } })).status, 401, 'the cookie opens the dashboard only');
  });

  it('is not mounted without --redis', async () => {
    const local = await startIn(sandbox, { dataDir: path.join(sandbox.root, 'local-data'), token: TOKEN });
    try {
      assert.equal((await fetch(`${local.url}/admin/queues`, { headers: auth })).status, 404);
    } finally {
      await local.close();
    }
  });
});
