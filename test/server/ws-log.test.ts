import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { rateLimitedLog } from '../../server/http/rate-limited-log.js';
import type { RunningServer } from '../../server/http/start.js';
import { makeSandbox, startIn, WsClient, type Sandbox } from './helpers.js';

describe('rejected WebSocket frames in the log (issue 14, defect 10)', () => {
  let sandbox: Sandbox;
  let server: RunningServer;
  const lines: { message: string; err: unknown }[] = [];

  before(async () => {
    sandbox = await makeSandbox();
    server = await startIn(sandbox, { log: (message, err) => lines.push({ message, err }) });
  });
  after(async () => {
    await server?.close();
    await sandbox?.remove();
  });

  it('logs one line per refused frame, without a stack, and at most 20 per 10 s for 600 frames', async () => {
    const ws = await WsClient.connect(server.url);
    try {
      await ws.waitFor((f) => f.type === 'snapshot');
      const replies = () => ws.frames.filter((f) => f.type === 'error').length;
      for (let i = 0; i < 600; i++) ws.send(i % 2 ? `{"type":"nope${i}"}` : `not json ${i}`);
      await ws.waitFor(() => replies() >= 600, 30_000, '600 error frames');
    } finally {
      await ws.close();
    }
    // A protocol violation (invalid UTF-8 in a text frame) closes that socket and is logged the same way.
    const raw = new WebSocket(`${server.url.replace('http', 'ws')}/ws`);
    await new Promise((resolve) => raw.once('open', resolve));
    const closed = new Promise((resolve) => raw.once('close', resolve));
    raw.send(Buffer.from([0xff, 0xfe, 0xfd]), { binary: false });
    await closed;

    const refused = lines.filter((l) => l.message.startsWith('websocket frame refused'));
    assert.ok(refused.length >= 1 && refused.length <= 20, `${refused.length} lines`);
    assert.ok(lines.every((l) => l.err === undefined), 'no exception (and so no stack) was logged');
    assert.ok(lines.every((l) => !l.message.includes('\n')), 'one line each');
  });

  it('rateLimitedLog lets the limit through per window and summarises the rest', () => {
    let t = 0;
    const out: string[] = [];
    const log = rateLimitedLog((m) => out.push(m), { lines: 2, windowMs: 1000, now: () => t });
    for (let i = 0; i < 5; i++) log(`a${i}`);
    t = 1000;
    log('b');
    assert.deepEqual(out, ['a0', 'a1', '(3 similar lines suppressed)', 'b']);
  });
});
