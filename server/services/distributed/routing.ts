import { createHash } from 'node:crypto';
import type { GraphIssue } from '../../../nodes/graph-format.js';
import { modelPathsOf, type RunPlan } from '../../engine/plan.js';
import type { WorkerInfo } from '../../../nodes/protocol.js';

/** The model folders a run reads (relative to a models root), by node and field: its nodes' models-root path params. */
export function modelsOf(plan: RunPlan): { node: string; field: string; path: string }[] {
  return modelPathsOf(plan);
}

/**
 * Runs are routed by the set of model folders they need: one BullMQ queue per set, consumed only by the workers
 * that serve every folder of it, so a worker never takes a run it cannot execute.
 */
export function routeOf(paths: readonly string[]): { id: string; queue: string; paths: string[] } {
  const sorted = [...new Set(paths)].sort();
  const id = createHash('sha256').update(JSON.stringify(sorted)).digest('hex').slice(0, 16);
  return { id, queue: `runs-${id}`, paths: sorted };
}

export function serves(worker: Pick<WorkerInfo, 'models'>, paths: readonly string[]): boolean {
  const own = new Set(worker.models.map((m) => m.path));
  return paths.every((p) => own.has(p));
}

/**
 * Refusal at submit: a run whose models no live worker serves all together is not queued (it would wait for a
 * worker that may never come). Each node whose folder no worker has is named; when every folder exists
 * somewhere but never all on one worker, every node that reads one is.
 */
export function routingIssues(plan: RunPlan, workers: readonly WorkerInfo[]): GraphIssue[] {
  const models = modelsOf(plan);
  if (workers.some((w) => serves(w, models.map((m) => m.path)))) return [];
  const offered = new Set(workers.flatMap((w) => w.models.map((m) => m.path)));
  const missing = models.filter((m) => !offered.has(m.path));
  const named = missing.length ? missing : models;
  return named.map((m) => ({
    node: m.node,
    field: m.field,
    code: 'model_unavailable',
    message: workers.length === 0
      ? 'no worker is connected, so no model can run'
      : missing.length
        ? `no live worker serves the model folder "${m.path}"`
        : 'no single live worker serves all of this run\'s model folders',
    actual: m.path,
  }));
}
