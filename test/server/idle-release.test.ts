import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { ChildProcess } from 'node:child_process';
import { api, gate, gateWait, isTerminal, makeSandbox, serveProcess, TINY_MODEL, txt2img, WsClient, type Sandbox } from './helpers.js';

async function procStatus(pid: number): Promise<{ threads: number; rssMiB: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return { threads: Number(/Threads:\s+(\d+)/.exec(status)![1]), rssMiB: Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024 };
}

interface Listing { path: string; loaded: boolean }
const loaded = async (url: string): Promise<boolean> =>
  (await api<{ models: Listing[] }>(url, '/api/models')).body.models.find((m) => m.path === TINY_MODEL)!.loaded;

/** Waits (bounded) until `/api/models` reports the tiny model unloaded: the server's own state, no fixed sleep. */
async function untilUnloaded(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (await loaded(url)) {
    if (Date.now() > deadline) throw new Error(`the model was still loaded after ${timeoutMs} ms idle`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('an idle server releases its models (--unload-idle)', { skip: process.platform !== 'linux' && 'reads /proc' }, () => {
  let sandbox: Sandbox;
  let server: { url: string; child: ChildProcess; exited: Promise<unknown> };

  before(async () => {
    sandbox = await makeSandbox();
    server = await serveProcess(sandbox, { args: ['--unload-idle', '0.3'] });
  });
  after(async () => {
    server?.child.kill('SIGKILL');
    await server?.exited;
    await sandbox?.remove();
  });

  it('releases the sessions and their threads after idle, never during a run, and loads again for the next run', async () => {
    const pid = server.child.pid!;
    const ws = await WsClient.connect(server.url, '?client_id=idle');
    try {
      // A run held at its first step has its model loaded; the idle delay passes many times over while it waits.
      await gate(server.url, { hold: true });
      const first = (await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: txt2img({ steps: 2 }), client_id: 'idle' } })).body.run_id;
      await gateWait(server.url, { waiting: 1 });
      const busy = await procStatus(pid);
      await new Promise((r) => setTimeout(r, 600)); // two idle delays: a running run must keep its model
      assert.equal(await loaded(server.url), true, 'a model in use is not released');
      await gate(server.url, { hold: false });
      assert.equal((await ws.waitFor(isTerminal(first), 60_000)).type, 'done');

      await untilUnloaded(server.url, 30_000);
      const idle = await procStatus(pid);
      assert.ok(idle.threads < busy.threads, `session threads end: ${busy.threads} while running, ${idle.threads} idle`);

      const second = (await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: txt2img({ steps: 2, seed: 9 }), client_id: 'idle' } })).body.run_id;
      assert.equal((await ws.waitFor(isTerminal(second), 60_000)).type, 'done', 'the next run loads the model again');
    } finally {
      await ws.close();
    }
  });
});
