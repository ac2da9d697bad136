// Usage: node --import tsx tools/bench/server-overhead.ts
// What the HTTP server adds to a run: the same small graph through executeGraph directly (as the CLI runs it)
// and through POST /api/runs until the WebSocket says done. Both sides reuse loaded models and the node cache,
// and each timed run changes the seed, so the timed work is the same: noise, sampler, decode, save.

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import type { Graph } from '../../nodes/graph-format.js';
import { NodeCache } from '../../server/engine/cache.js';
import { executeGraph } from '../../server/execution/executor.js';
import { startServer } from '../../server/http/start.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import { txt2imgGraph } from '../../test/helpers/graphs.js';
import { writeTinyModel } from '../tiny-models/make-tiny-model.js';
import { median } from '../stats.js';

export interface ServerOverhead {
  /** Median milliseconds of one run through executeGraph. */
  readonly cliMs: number;
  /** Median milliseconds from POST /api/runs to the `done` frame. */
  readonly serverMs: number;
}

const graphFor = (seed: number): Graph => txt2imgGraph('tiny', { seed, steps: 10 });

async function timeDirect(roots: { models: string; input: string; output: string }, runs: number): Promise<number[]> {
  const models = new ModelManager();
  const cache = new NodeCache();
  try {
    await executeGraph(graphFor(0), { roots, models, cache });
    const times: number[] = [];
    for (let i = 1; i <= runs; i++) {
      const t0 = performance.now();
      await executeGraph(graphFor(i), { roots, models, cache });
      times.push(performance.now() - t0);
    }
    return times;
  } finally {
    await models.dispose();
  }
}

async function timeServer(roots: { models: string; input: string; output: string }, dataDir: string, runs: number): Promise<number[]> {
  const server = await startServer({
    port: 0, modelsRoot: roots.models, inputRoot: roots.input, outputRoot: roots.output, dataDir, previewEvery: 0,
  });
  const ws = new WebSocket(`${server.url.replace('http', 'ws')}/ws?client_id=bench`);
  const waiting = new Map<string, (outcome: string) => void>();
  // Frames can beat the POST response, so remember outcomes nobody waits for yet.
  const finished = new Map<string, string>();
  ws.on('message', (data) => {
    const f = JSON.parse(String(data)) as { type: string; run_id?: string; message?: string };
    if (!f.run_id || !['done', 'error', 'cancelled'].includes(f.type)) return;
    const outcome = f.type === 'done' ? 'done' : `${f.type}: ${f.message ?? ''}`;
    const resolve = waiting.get(f.run_id);
    if (resolve) resolve(outcome);
    else finished.set(f.run_id, outcome);
  });
  await new Promise<void>((resolve, reject) => ws.once('open', resolve).once('error', reject));

  const runOnce = async (seed: number): Promise<number> => {
    const t0 = performance.now();
    const res = await fetch(`${server.url}/api/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ graph: graphFor(seed), client_id: 'bench' }),
    });
    if (res.status !== 202) throw new Error(`POST /api/runs answered ${res.status}: ${await res.text()}`);
    const { run_id } = (await res.json()) as { run_id: string };
    const outcome = finished.get(run_id) ?? (await new Promise<string>((resolve) => waiting.set(run_id, resolve)));
    const ms = performance.now() - t0;
    waiting.delete(run_id);
    finished.delete(run_id);
    if (outcome !== 'done') throw new Error(`bench run ${run_id} ended with ${outcome}`);
    return ms;
  };

  try {
    await runOnce(0);
    const times: number[] = [];
    for (let i = 1; i <= runs; i++) times.push(await runOnce(i));
    return times;
  } finally {
    ws.close();
    await server.close();
  }
}

export async function benchServerOverhead(runs = 5): Promise<ServerOverhead> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-bench-server-'));
  try {
    const roots = { models: path.join(root, 'models'), input: path.join(root, 'input'), output: path.join(root, 'output') };
    await mkdir(roots.input, { recursive: true });
    await writeTinyModel(path.join(roots.models, 'tiny'));
    const direct = await timeDirect(roots, runs);
    const served = await timeServer(roots, path.join(root, 'data'), runs);
    return { cliMs: median(direct), serverMs: median(served) };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
