import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Graph } from '../../nodes/graph-format.js';
import { bundledGraph } from '../helpers/graphs.js';
import { api } from '../server/helpers.js';
import type { WorkerInfo } from '../../nodes/protocol.js';
import { startWorker as spawnWorker, type WorkerProcess } from '../../tools/scale-out/processes.js';

export { startRedis, type TestRedis, type WorkerProcess } from '../../tools/scale-out/processes.js';

/**
 * A worker process for tests: one compute thread, test hooks on, a short lock so a killed worker's run moves on
 * quickly; `extra` adds options, `env` sets its environment.
 */
export function startWorker(
  redisUrl: string,
  o: { name: string; models: string; out: string; extra?: string[]; env?: NodeJS.ProcessEnv },
): Promise<WorkerProcess> {
  return spawnWorker(redisUrl, { ...o, lockMs: 3000, extra: ['--test-hooks', ...(o.extra ?? [])] });
}

/** Resolves with the live workers once `predicate` holds (the API node reads heartbeats every 500 ms). */
export async function workersUntil(
  base: string,
  predicate: (w: WorkerInfo[]) => boolean,
  timeoutMs = 30_000,
  headers: Record<string, string> = {},
): Promise<WorkerInfo[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await api<{ workers: WorkerInfo[] }>(base, '/api/workers', { headers });
    if (predicate(res.body.workers)) return res.body.workers;
    if (Date.now() > deadline) throw new Error(`workers never matched: ${JSON.stringify(res.body.workers.map((w) => [w.name, w.running, w.runs_done]))}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The demo fusion graph (models/demo) with fewer steps and a chosen seed, so runs are short and not cached. */
export function demoGraph(seed: number, steps = 6): Graph {
  const graph = bundledGraph('demo-fusion');
  for (const node of Object.values(graph.nodes)) {
    if (node.type === 'DDIMStep') node.params = { ...node.params, steps };
    if (node.type === 'NoiseLatent') node.params = { ...node.params, seed };
  }
  return graph;
}

/**
 * The `skip` option of a suite that starts a Redis. Without Debian's redis-server the suite is skipped and says so by
 * name in the output; in CI (CI=true) a missing redis-server is a failure instead, so a broken image cannot pass by
 * testing nothing (.ci/run installs it).
 */
export function redisSuiteSkip(suite: string): string | false {
  const onPath = (process.env.PATH ?? '').split(':').some((dir) => dir && existsSync(path.join(dir, 'redis-server')));
  if (onPath || process.env.CI === 'true') return false;
  const reason = 'redis-server not found on PATH; install it with "apt-get install -y redis-server" to run it';
  console.log(`# SKIPPED SUITE "${suite}": ${reason}`);
  return reason;
}
