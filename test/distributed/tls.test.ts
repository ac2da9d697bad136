import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { RunningServer } from '../../server/http/start.js';
import { REPO_ROOT } from '../helpers/graphs.js';
import { redisTarget } from '../../server/services/distributed/redis.js';
import { api, isTerminal, makeSandbox, startIn, txt2img, WsClient, type Sandbox } from '../server/helpers.js';
import type { RunSummary } from '../../nodes/protocol.js';
import { startRedis, startWorker, workersUntil, type TestRedis, type WorkerProcess, redisSuiteSkip } from './helpers.js';

const TLS = path.join(REPO_ROOT, 'test', 'fixtures', 'tls');
const CA = path.join(TLS, 'ca.pem');

describe('scale-out over rediss:// (a Redis that speaks only TLS, with a private CA)', { skip: redisSuiteSkip('scale-out over rediss:// (a Redis that speaks only TLS, with a private CA)') }, () => {
  let redis: TestRedis;
  let sandbox: Sandbox;
  let server: RunningServer | undefined;
  const workers: WorkerProcess[] = [];

  const worker = async (name: string, o: { extra?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<WorkerProcess> => {
    const w = await startWorker(redis.url, { name, models: sandbox.modelsRoot, out: path.join(sandbox.root, `out-${name}`), ...o });
    workers.push(w);
    return w;
  };

  before(async () => {
    redis = await startRedis({ tls: { cert: path.join(TLS, 'server.pem'), key: path.join(TLS, 'server.key'), ca: CA } });
    sandbox = await makeSandbox();
  });

  after(async () => {
    await server?.close();
    await Promise.all(workers.map((w) => w.stop()));
    await redis?.stop();
    await sandbox?.remove();
  });

  it('refuses to start, saying what to do, when the certificate is not trusted', async () => {
    assert.match(redis.url, /^rediss:\/\/127\.0\.0\.1:\d+$/);
    const t0 = Date.now();
    await assert.rejects(startIn(sandbox, { redis: redis.url }), /TLS certificate is not trusted \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE):.*--redis-ca FILE or NODE_EXTRA_CA_CERTS/);
    assert.ok(Date.now() - t0 < 8000, 'fails at once, not after the 10 s answer timeout');
    await assert.rejects(worker('untrusted'), (err: Error) => {
      assert.match(err.message, /exited \(1\) before starting/);
      assert.match(err.message, /error: Redis at 127\.0\.0\.1:\d+: its TLS certificate is not trusted/);
      return true;
    });
  });

  it('refuses a --redis-ca that cannot serve: unreadable, not a certificate, or without TLS', () => {
    assert.throws(() => redisTarget(redis.url, path.join(TLS, 'missing.pem')), /--redis-ca: cannot read .*missing\.pem/);
    assert.throws(() => redisTarget(redis.url, path.join(TLS, 'server.key')), /--redis-ca: .*server\.key holds no PEM certificate/);
    assert.throws(() => redisTarget('redis://127.0.0.1:6379', CA), /must start with rediss:\/\//);
    assert.deepEqual(redisTarget(redis.url, undefined), { url: redis.url });
  });

  it('runs a graph with the API node and a worker on TLS, trusting the CA by --redis-ca', async () => {
    server = await startIn(sandbox, { redis: redis.url, redisCa: CA });
    await worker('tls', { extra: ['--redis-ca', CA] });
    await workersUntil(server.url, (w) => w.length === 1);
    const ws = await WsClient.connect(server.url, '?client_id=tls');
    try {
      const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: txt2img({ steps: 2, size: 32 }), client_id: 'tls' } });
      assert.equal(post.status, 202, JSON.stringify(post.body));
      const end = await ws.waitFor(isTerminal(post.body.run_id), 60_000);
      assert.equal(end.type, 'done', JSON.stringify(end));
      const run = await api<RunSummary>(server.url, `/api/runs/${post.body.run_id}`);
      assert.equal(run.body.worker, 'tls');
      const image = await fetch(server.url + run.body.outputs[0]!.url);
      assert.equal(image.status, 200);
    } finally {
      await ws.close();
    }
  });

  it('trusts the CA given by NODE_EXTRA_CA_CERTS, without --redis-ca', async () => {
    await worker('extra-ca', { env: { NODE_EXTRA_CA_CERTS: CA } });
    const list = await workersUntil(server!.url, (w) => w.some((x) => x.name === 'extra-ca'));
    assert.ok(list.some((w) => w.name === 'extra-ca'));
  });
});
