import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { writeTinyModel } from '../../tools/tiny-models/make-tiny-model.js';
import { TOKENIZER_FIXTURE } from '../helpers/graphs.js';
import {
  api, gate, gateWait, isTerminal, makeSandbox, processGone, rssMiB, serveProcess, sessionProcesses, TINY_MODEL, txt2img, WsClient, type Sandbox,
} from './helpers.js';

interface Listing { path: string; loaded: boolean }
const loaded = async (url: string, model = TINY_MODEL): Promise<boolean> =>
  (await api<{ models: Listing[] }>(url, '/api/models')).body.models.find((m) => m.path === model)!.loaded;

/** Waits (bounded) until `/api/models` reports the model unloaded: the server's own state, no fixed sleep. */
async function untilUnloaded(url: string, timeoutMs: number, model = TINY_MODEL): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (await loaded(url, model)) {
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
      const busy = await sessionProcesses(pid);
      assert.equal(busy.length, 1, 'the loaded model runs in one session process');
      await new Promise((r) => setTimeout(r, 600)); // two idle delays: a running run must keep its model
      assert.equal(await loaded(server.url), true, 'a model in use is not released');
      await gate(server.url, { hold: false });
      assert.equal((await ws.waitFor(isTerminal(first), 60_000)).type, 'done');

      await untilUnloaded(server.url, 30_000);
      await processGone(busy[0]!);
      assert.deepEqual(await sessionProcesses(pid), [], 'released: no session process left');

      const second = (await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: txt2img({ steps: 2, seed: 9 }), client_id: 'idle' } })).body.run_id;
      assert.equal((await ws.waitFor(isTerminal(second), 60_000)).type, 'done', 'the next run loads the model again');
    } finally {
      await ws.close();
    }
  });

  it('returns the memory a model used: after release the server is back at its size after a small model\'s cycle', async () => {
    // A model whose session process grows by hundreds of MiB, against the same server warmed up by the tiny model (the
    // server's own first-run growth — libraries, caches — is not the model's). With the sessions in a worker thread
    // (--session-isolation thread) the C allocator keeps most of that model's freed heap in the server: measured
    // here 150 → 366–453 MiB after its releases; with session processes 150 → 193–222 MiB (the rest is the server's
    // JavaScript heap, collected when V8 decides).
    await writeTinyModel(path.join(sandbox.modelsRoot, 'big'), { tokenizerDir: TOKENIZER_FIXTURE, unetWidth: 512, unetDepth: 6 });
    const pid = server.child.pid!;
    const ws = await WsClient.connect(server.url, '?client_id=mem');
    const runOn = async (model: string, seed: number): Promise<void> => {
      const id = (await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: txt2img({ steps: 2, seed, model, size: 128 }), client_id: 'mem' } })).body.run_id;
      assert.equal((await ws.waitFor(isTerminal(id), 120_000)).type, 'done');
    };
    try {
      await runOn(TINY_MODEL, 1);
      await untilUnloaded(server.url, 30_000);
      const warm = await rssMiB(pid);
      let peak = 0;
      let session = 0;
      for (let i = 0; i < 2; i++) {
        await runOn('big', 2 + i);
        [session] = (await sessionProcesses(pid)) as [number];
        peak = Math.max(peak, await rssMiB(session));
      }
      await untilUnloaded(server.url, 30_000, 'big');
      await processGone(session);
      const idle = await rssMiB(pid);
      console.log(`# server RSS ${warm.toFixed(0)} MiB warm, ${idle.toFixed(0)} MiB after the big model's release; its session process peaked at ${peak.toFixed(0)} MiB`);
      assert.ok(peak > 200, `the big model's process held ${peak.toFixed(0)} MiB: enough to show`);
      assert.ok(idle - warm < 64, `server ${warm.toFixed(0)} MiB before, ${idle.toFixed(0)} MiB after the release`);
      assert.deepEqual(await sessionProcesses(pid), []);
    } finally {
      await ws.close();
    }
  });
});
