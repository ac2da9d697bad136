import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { RunningServer } from '../../server/http/start.js';
import { api, makeSandbox, startIn, WsClient, type Sandbox } from './helpers.js';

const TOKEN = 'test-token-123';

function getWithHost(base: string, route: string, host: string): Promise<number> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: route, headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('access control', () => {
  let sandbox: Sandbox;

  before(async () => {
    sandbox = await makeSandbox();
  });

  after(async () => {
    await sandbox?.remove();
  });

  it('refuses to listen beyond loopback without a token', async () => {
    await assert.rejects(startIn(sandbox, { host: '0.0.0.0' }), /without a token/);
    await assert.rejects(startIn(sandbox, { host: '::', token: '' }), /without a token/);
    await assert.rejects(startIn(sandbox, { concurrency: 0 }), /concurrency/);
  });

  describe('with a token on 0.0.0.0', () => {
    let server: RunningServer;
    let base: string;

    before(async () => {
      server = await startIn(sandbox, { host: '0.0.0.0', token: TOKEN });
      base = `http://127.0.0.1:${server.port}`;
    });

    after(async () => {
      await server?.close();
    });

    it('answers 401 without the token and serves with it', async () => {
      const none = await api<{ error: string }>(base, '/api/nodes');
      assert.equal(none.status, 401);
      assert.equal(none.body.error, 'unauthorized');
      const wrong = await api(base, '/api/nodes', { headers: { authorization: 'Bearer nope' } });
      assert.equal(wrong.status, 401);
      const right = await api(base, '/api/nodes', { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(right.status, 200);
      const query = await api(base, `/api/queue?token=${TOKEN}`);
      assert.equal(query.status, 200, 'GETs may carry the token in the query, for <img src>');
      const postQuery = await api(base, `/api/queue/pause?token=${TOKEN}`, { method: 'POST' });
      assert.equal(postQuery.status, 401, 'state changes need the header');
      const missingRoute = await api(base, '/api/nope');
      assert.equal(missingRoute.status, 401, 'no route listing for strangers');
      const page = await fetch(base + '/');
      assert.equal(page.status, 200, 'the editor page itself holds no secrets');
    });

    it('requires the token for WebSockets too', async () => {
      await assert.rejects(WsClient.connect(base), /401/);
      const viaQuery = await WsClient.connect(base, `?token=${TOKEN}`);
      await viaQuery.waitFor((f) => f.type === 'snapshot');
      await viaQuery.close();
      const viaHeader = await WsClient.connect(base, '', { authorization: `Bearer ${TOKEN}` });
      await viaHeader.waitFor((f) => f.type === 'snapshot');
      await viaHeader.close();
    });
  });

  describe('without a token on loopback', () => {
    let server: RunningServer;

    before(async () => {
      server = await startIn(sandbox);
    });

    after(async () => {
      await server?.close();
    });

    it('refuses foreign origins and rebound host names', async () => {
      assert.equal((await api(server.url, '/api/nodes')).status, 200);
      assert.equal((await api(server.url, '/api/nodes', { headers: { origin: 'http://localhost:5173' } })).status, 200);
      const foreign = await api<{ error: string }>(server.url, '/api/queue/pause', { method: 'POST', headers: { origin: 'https://evil.example' } });
      assert.equal(foreign.status, 403);
      assert.equal(foreign.body.error, 'forbidden_origin');
      assert.equal(await getWithHost(server.url, '/api/nodes', 'evil.example:8188'), 403);
      await assert.rejects(WsClient.connect(server.url, '', { origin: 'https://evil.example' }), /403/);
      const queue = await api<{ paused: boolean }>(server.url, '/api/queue');
      assert.equal(queue.body.paused, false);
    });
  });
});
