// Usage: node --import tsx tools/bench/ws-slow-reader.ts [steps]
// What a WebSocket reader that stops reading costs the server: the server runs in a child process, a client submits
// a run with a 30 KB preview every step and stops reading, and the child's resident memory is sampled until the run
// ends. Once with the server's limits (skip previews past 4 MB unsent, drop the socket past 64 MB), once without.

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { startServer } from '../../server/http/start.js';
import { txt2imgGraph } from '../../test/helpers/graphs.js';
import { writeTinyModel } from '../tiny-models/make-tiny-model.js';

const SELF = fileURLToPath(import.meta.url);

async function serve(root: string, mode: string): Promise<void> {
  const unbounded = mode === 'unbounded';
  const server = await startServer({
    port: 0, modelsRoot: path.join(root, 'models'), inputRoot: path.join(root, 'input'), outputRoot: path.join(root, 'output'),
    dataDir: path.join(root, `data-${mode}`), previewEvery: 1, log: () => {},
    ...(unbounded ? { wsBacklogBytes: Infinity, wsMaxBacklogBytes: Infinity } : {}),
  });
  console.log(server.url);
  process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

function open(url: string): Promise<WebSocket> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/ws`);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Sends a run and resolves with its terminal frame type, or 'socket closed' (the server drops a reader that stays stalled). */
function runOn(ws: WebSocket, steps: number, seed: number): Promise<string> {
  return new Promise((resolve) => {
    let runId: string | undefined;
    ws.once('close', () => resolve('socket closed'));
    ws.on('message', (data) => {
      const f = JSON.parse(String(data)) as { type: string; run_id?: string; ref?: string };
      if (f.type === 'queued' && f.ref === `r${seed}`) runId = f.run_id;
      if (f.run_id === runId && ['done', 'error', 'cancelled'].includes(f.type)) resolve(f.type);
    });
    ws.send(JSON.stringify({ type: 'run', graph: txt2imgGraph('tiny', { steps, seed, size: 512 }), ref: `r${seed}` }));
  });
}

async function measure(root: string, mode: string, steps: number): Promise<{ peakMiB: number; previews: number; end: string }> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', SELF, 'serve', root, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve) => child.stdout!.once('data', (d) => resolve(String(d).trim())));
  try {
    const fast = await open(url);
    await runOn(fast, 2, 1); // loads the model, so the baseline includes it
    const slow = await open(url);
    let previews = 0;
    slow.on('message', (data) => {
      if (String(data).startsWith('{"type":"preview"')) previews += 1;
    });
    await new Promise((resolve) => setTimeout(resolve, 200)); // the snapshot arrives
    const baseline = rssBytes(child.pid!);
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssBytes(child.pid!));
    }, 50);
    // The fast socket follows every run (subscribed before the slow run exists) to learn when it ends.
    const ended = new Promise<void>((resolve) => {
      fast.on('message', (data) => {
        const f = JSON.parse(String(data)) as { type: string };
        if (f.type === 'done' || f.type === 'error') resolve();
      });
    });
    await new Promise<void>((resolve) => {
      fast.once('message', () => resolve()); // the subscribe's snapshot
      fast.send(JSON.stringify({ type: 'subscribe', runs: 'all', previews: false }));
    });
    const slowDone = runOn(slow, steps, 2);
    slow.pause();
    await ended;
    clearInterval(sampler);
    slow.resume();
    const end = await slowDone;
    fast.close();
    slow.close();
    return { peakMiB: (peak - baseline) / 2 ** 20, previews, end };
  } finally {
    child.kill('SIGTERM');
  }
}

if (process.argv[2] === 'serve') {
  await serve(process.argv[3]!, process.argv[4]!);
} else {
  const steps = Number(process.argv[2] ?? 1000);
  const root = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-slow-reader-'));
  try {
    await writeTinyModel(path.join(root, 'models', 'tiny'), {});
    await mkdir(path.join(root, 'input'), { recursive: true });
    for (const mode of ['bounded', 'unbounded']) {
      const r = await measure(root, mode, steps);
      console.log(`${mode.padEnd(9)}: server RSS +${r.peakMiB.toFixed(1)} MiB while the reader was stalled; ${r.previews} of ${steps} previews delivered; the slow socket saw: ${r.end}`);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
