/**
 * `npm run load`: drives a real `fusegraph serve` process. N WebSocket clients each submit M runs of a small
 * txt2img on the committed demo model (32×32, `--steps`, one seed per run so nothing is served from the cache)
 * and wait for them. Prints p50/p95 time from submit to `done`, lost or misordered events, and the server's RSS
 * at start, after the runs and after `--idle` seconds idle (the server releases its models after `--unload-idle`
 * seconds without a run, by default half of `--idle`).
 *   npm run load -- [--clients 20] [--runs 5] [--steps 20] [--idle 20] [--unload-idle 10]
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { childProcesses, rssMiB } from '../proc.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const CLIENTS = arg('clients', 20);
const RUNS = arg('runs', 5);
const STEPS = arg('steps', 20);
const IDLE_S = arg('idle', 20);
const UNLOAD_IDLE_S = arg('unload-idle', IDLE_S / 2);

type Frame = { type: string; run_id?: string; step?: number; [k: string]: unknown };

function graph(seed: number): unknown {
  const link = (node: string, output: string) => ({ node, output });
  return {
    format: 'fusegraph', version: 1,
    nodes: {
      model: { type: 'LoadModel', params: { path: 'demo/general', provider: 'cpu' } },
      pos: { type: 'EncodePrompt', params: { text: 'a red circle on the left' }, inputs: { model: link('model', 'model') } },
      neg: { type: 'EncodePrompt', params: { text: '' }, inputs: { model: link('model', 'model') } },
      noise: { type: 'NoiseLatent', params: { seed, width: 32, height: 32, batch: 1 }, inputs: { model: link('model', 'model') } },
      eps: { type: 'PredictNoise', params: { guidance_scale: 7.5 }, inputs: { model: link('model', 'model'), positive: link('pos', 'cond'), negative: link('neg', 'cond') } },
      sample: { type: 'DDIMStep', params: { steps: STEPS }, inputs: { model: link('model', 'model'), noise: link('eps', 'noise'), latent: link('noise', 'latent') } },
      decode: { type: 'Decode', inputs: { model: link('model', 'model'), latent: link('sample', 'latent') } },
      save: { type: 'SaveImage', params: { prefix: 'load' }, inputs: { image: link('decode', 'image') } },
    },
  };
}

/** The server's RSS and its child processes' (one session process per loaded model; an activation probe), MiB. */
async function memory(pid: number): Promise<{ server: number; children: number }> {
  let children = 0;
  for (const c of await childProcesses(pid)) children += await rssMiB(c.pid).catch(() => 0);
  return { server: await rssMiB(pid), children };
}
const mib = (m: { server: number; children: number }): string => `${m.server.toFixed(0)} + ${m.children.toFixed(0)}`;

/** Problems in one run's frame sequence: what a client must see, in the documented order. */
function orderProblems(frames: readonly Frame[]): string[] {
  const types = frames.map((f) => f.type);
  const problems: string[] = [];
  const at = (t: string) => types.indexOf(t);
  for (const t of ['queued', 'started', 'node_started', 'output', 'done']) if (at(t) < 0) problems.push(`lost ${t}`);
  if (at('queued') > at('started')) problems.push('started before queued');
  if (at('started') > at('node_started')) problems.push('node_started before started');
  if (at('output') > at('done')) problems.push('output after done');
  if (types.lastIndexOf('progress') > at('done')) problems.push('progress after done');
  const steps = frames.filter((f) => f.type === 'progress').map((f) => f.step!);
  if (steps.some((s, i) => i > 0 && s <= steps[i - 1]!)) problems.push('progress steps out of order');
  if (steps.at(-1) !== STEPS) problems.push(`last progress step ${steps.at(-1)} of ${STEPS}`);
  return problems;
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

const root = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-load-'));
const child = spawn(process.execPath, [
  path.join(REPO, 'bin', 'fusegraph.js'), 'serve', '--port', '0', '--models', path.join(REPO, 'models'),
  '--input', path.join(root, 'input'), '--out', path.join(root, 'output'), '--data', path.join(root, 'data'),
  '--max-queued-per-client', String(RUNS), '--unload-idle', String(UNLOAD_IDLE_S),
], { env: { ...process.env, FUSEGRAPH_NO_WEBGPU: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
try {
  const base = await new Promise<string>((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += String(d);
      const m = /API on (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`server exited (${code}): ${err}`)));
  });
  const rssStart = await memory(child.pid!);
  console.log(`server ${base} (pid ${child.pid}), ${CLIENTS} clients × ${RUNS} runs, demo/general 32×32, ${STEPS} steps`);

  const durations: number[] = [];
  const problems: string[] = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
    const clientId = `load-${c}`;
    const ws = new WebSocket(`${base.replace('http', 'ws')}/ws?client_id=${clientId}`);
    const frames = new Map<string, Frame[]>();
    const waiting = new Map<string, () => void>();
    ws.on('message', (d) => {
      const f = JSON.parse(String(d)) as Frame;
      if (!f.run_id) return;
      const list = frames.get(f.run_id) ?? [];
      list.push(f);
      frames.set(f.run_id, list);
      if (['done', 'error', 'cancelled'].includes(f.type)) waiting.get(f.run_id)?.();
    });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    await Promise.all(Array.from({ length: RUNS }, async (_, r) => {
      const started = performance.now();
      const res = await fetch(`${base}/api/runs`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ graph: graph(c * RUNS + r), client_id: clientId }),
      });
      const body = (await res.json()) as { run_id?: string; error?: string };
      if (res.status !== 202 || !body.run_id) {
        problems.push(`${clientId} run ${r}: ${res.status} ${body.error}`);
        return;
      }
      const id = body.run_id;
      await new Promise<void>((resolve) => {
        const list = frames.get(id) ?? [];
        if (list.some((f) => ['done', 'error', 'cancelled'].includes(f.type))) resolve();
        else waiting.set(id, resolve);
      });
      durations.push(performance.now() - started);
      for (const p of orderProblems(frames.get(id)!)) problems.push(`${clientId} ${id}: ${p}`);
    }));
    ws.close();
  }));
  const wallS = (performance.now() - t0) / 1000;
  const rssAfter = await memory(child.pid!);
  await new Promise((resolve) => setTimeout(resolve, IDLE_S * 1000));
  const rssIdle = await memory(child.pid!);
  const listing = (await (await fetch(`${base}/api/models`)).json()) as { models: { loaded: boolean }[] };
  const loadedIdle = listing.models.filter((m) => m.loaded).length;

  const total = CLIENTS * RUNS;
  console.log(`runs done: ${durations.length} of ${total} in ${wallS.toFixed(1)} s`);
  console.log(`time to done: p50 ${(pct(durations, 50) / 1000).toFixed(2)} s, p95 ${(pct(durations, 95) / 1000).toFixed(2)} s (runs execute one at a time; the queue wait dominates)`);
  console.log(`lost or misordered events: ${problems.length}`);
  for (const p of problems.slice(0, 10)) console.log(`  ${p}`);
  console.log(
    `RSS, server + its child processes (session processes, activation probe): ${mib(rssStart)} MiB at start, ${mib(rssAfter)} MiB ` +
      `after the runs, ${mib(rssIdle)} MiB after ${IDLE_S} s idle (${loadedIdle} model(s) loaded then; --unload-idle ${UNLOAD_IDLE_S} s)`,
  );
  process.exitCode = problems.length || durations.length !== total ? 1 : 0;
} finally {
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  await rm(root, { recursive: true, force: true });
}
