import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { api, makeSandbox, startIn, type Sandbox } from './helpers.js';

describe('test hooks', () => {
  let sandbox: Sandbox;
  before(async () => {
    sandbox = await makeSandbox();
  });
  after(async () => {
    await sandbox?.remove();
  });

  it('are not mounted unless asked for', async () => {
    const server = await startIn(sandbox, { testHooks: false });
    try {
      assert.equal((await api(server.url, '/api/test/gate')).status, 404);
      assert.equal((await api(server.url, '/api/test/gate', { body: { hold: true } })).status, 404);
    } finally {
      await server.close();
    }
  });

  it('refuse a malformed gate request and time out a wait that is never met', async () => {
    const server = await startIn(sandbox);
    try {
      assert.equal((await api(server.url, '/api/test/gate', { body: {} })).status, 400);
      assert.equal((await api(server.url, '/api/test/gate', { body: { hold: 'yes' } })).status, 400);
      const wait = await api<{ error: string }>(server.url, '/api/test/gate/wait', { body: { waiting: 1, timeout_ms: 20 } });
      assert.equal(wait.status, 408);
      assert.equal(wait.body.error, 'timeout');
    } finally {
      await server.close();
    }
  });
});
