import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Graph } from '../../nodes/graph-format.js';
import { getNodeDef } from '../../nodes/index.js';
import { implementationOf } from '../impls/index.js';
import type { RunContext, StepContext } from '../impls/types.js';
import type { ModelManager } from '../sd/model-manager.js';
import { collectGarbage } from '../runtime/garbage.js';
import { outOfMemory } from '../runtime/out-of-memory.js';
import type { ProviderChoice } from '../runtime/providers.js';
import type { SdModel } from '../sd/sd-model.js';
import type { NodeCache } from '../engine/cache.js';
import { GraphValidationError, NodeExecutionError, RunCancelledError } from '../engine/errors.js';
import type { ExecutionEvent, OutputFile, RunResult } from '../engine/events.js';
import { RunPlan } from '../engine/plan.js';
import { prepareRun } from '../engine/prepare.js';
import { preflightGraph, type PreflightOptions } from './preflight.js';
import type { StepGate } from '../engine/step-gate.js';

export interface ExecuteOptions {
  readonly roots: { readonly models: string; readonly input: string; readonly output: string };
  readonly models: ModelManager;
  readonly cache?: NodeCache;
  readonly signal?: AbortSignal;
  readonly onEvent?: (e: ExecutionEvent) => void;
  /** Emit a preview of x̂0 every N steps; 0 = none. */
  readonly previewEvery?: number;
  /** Test-only: sampler steps wait at this gate (see step-gate.ts). */
  readonly stepGate?: StepGate;
  /** The memory budget and measured activations to admit a graph (not a plan) against before any node runs. */
  readonly admission?: Pick<PreflightOptions, 'maxRunMemory' | 'activations'>;
  /** What a LoadModel's `auto` provider means here (a scale-out worker's --provider); default: auto's own choice. */
  readonly defaultProvider?: ProviderChoice;
}

/**
 * Runs a plan, or validates, plans and admits a graph first (prepareRun: every issue at once, as a
 * GraphValidationError, before any model loads). A plan was prepared already (serve's submission) and is not checked
 * again. Nodes run in dependency order; NOISE/SALIENCY nodes become functions that a sampling loop calls at each
 * timestep, memoised per step, so a branch that a switch does not take costs nothing.
 */
export async function executeGraph(input: RunPlan | Graph | unknown, options: ExecuteOptions): Promise<RunResult> {
  try {
    return await execute(input, options);
  } catch (err) {
    // The failed run's tensors are unreachable once execute() has returned: free them before the next run needs the memory.
    if (outOfMemory(err)) collectGarbage();
    throw err;
  }
}

async function execute(input: RunPlan | Graph | unknown, options: ExecuteOptions): Promise<RunResult> {
  const started = performance.now();
  const roots = { models: path.resolve(options.roots.models), input: path.resolve(options.roots.input), output: path.resolve(options.roots.output) };
  let plan: RunPlan;
  if (input instanceof RunPlan) {
    plan = input;
  } else {
    // The CLI, a scale-out worker and a run re-queued by a restart come with a graph: the same checks as submission.
    const prepared = await prepareRun(input, (p) => preflightGraph(p, {
      roots, ...options.admission, ...(options.defaultProvider ? { provider: options.defaultProvider } : {}),
    }));
    if (!prepared.ok) throw new GraphValidationError(prepared.issues);
    plan = prepared.plan;
  }
  const { graph, params } = plan;
  const signal = options.signal ?? new AbortController().signal;
  const emit = (e: ExecutionEvent): void => options.onEvent?.(e);
  const acquired: SdModel[] = [];
  const outputs: OutputFile[] = [];
  const timings: Record<string, number> = {};
  const cachedNodes: string[] = [];
  const values = new Map<string, Record<string, unknown>>();
  const signatures = new Map<string, string>();

  const callsBefore = new Map<SdModel, number>();
  const contextFor = (id: string, nodeType: string): RunContext => ({
    node: id,
    nodeType,
    plan,
    roots,
    models: options.models,
    signal,
    previewEvery: options.previewEvery ?? 0,
    emit,
    acquireModel: async (source, provider) => {
      const choice = provider === 'auto' && options.defaultProvider ? options.defaultProvider : (provider as ProviderChoice);
      // A checkpoint's first use builds its ONNX graphs: shown as the loader's progress, part by part (t has no
      // meaning here; 0 keeps the event's shape).
      const m = await options.models.acquire(source, choice, (_part, done, total) => emit({ type: 'progress', node: id, step: done, steps: total, t: 0 }));
      acquired.push(m);
      if (!callsBefore.has(m)) callsBefore.set(m, m.unetCalls);
      return m;
    },
    loadedModels: () => [...new Set(acquired)],
    recordOutput: (file) => {
      outputs.push(file);
    },
    checkCancelled: () => {
      if (signal.aborted) throw new RunCancelledError();
    },
    gateStep: async (step, steps) => {
      await options.stepGate?.pass({ node: id, step, steps }, signal);
    },
    warn: (message) => emit({ type: 'warning', node: id, message }),
    error: (message, field, cause) => new NodeExecutionError(id, nodeType, message, cause, field),
  });

  try {
    for (const id of plan.order) {
      if (signal.aborted) throw new RunCancelledError();
      const node = graph.nodes[id]!;
      const def = getNodeDef(node.type)!;
      const impl = implementationOf(node.type);
      if (!impl) throw new NodeExecutionError(id, node.type, `no implementation registered for ${node.type}`);
      const inputs: Record<string, unknown> = {};
      const upstream: [string, string, string][] = [];
      for (const [name, link] of Object.entries(node.inputs ?? {})) {
        inputs[name] = values.get(link.node)?.[link.output];
        upstream.push([name, signatures.get(link.node)!, link.output]);
      }
      const salt = impl.kind === 'once' && impl.fingerprint ? await impl.fingerprint(params[id] as never, roots) : '';
      const signature = hashSignature(node.type, params[id]!, upstream.sort(), salt);
      signatures.set(id, signature);
      const ctx = contextFor(id, node.type);

      if (impl.kind === 'per-step') {
        values.set(id, { [Object.keys(def.outputs)[0]!]: perStepFunction(id, node.type, impl, inputs, params[id]!, ctx) });
        continue;
      }
      const hit = impl.cacheable ? options.cache?.get(signature) : undefined;
      if (hit) {
        values.set(id, hit);
        cachedNodes.push(id);
        emit({ type: 'node_cached', node: id, nodeType: node.type });
        const files = (hit as { files?: OutputFile[] }).files;
        if (files?.length) {
          outputs.push(...files);
          emit({ type: 'output', node: id, files });
        }
        continue;
      }
      emit({ type: 'node_started', node: id, nodeType: node.type });
      const t0 = performance.now();
      const before = outputs.length;
      let result: Record<string, unknown>;
      try {
        result = (await impl.run(inputs as never, params[id] as never, ctx)) as Record<string, unknown>;
      } catch (err) {
        throw signal.aborted ? new RunCancelledError() : wrapError(err, id, node.type);
      }
      const files = outputs.slice(before);
      if (def.output) {
        result = { ...result, files };
        if (files.length) emit({ type: 'output', node: id, files });
      }
      values.set(id, result);
      if (impl.cacheable) options.cache?.set(signature, result);
      timings[id] = performance.now() - t0;
      emit({ type: 'node_done', node: id, nodeType: node.type, ms: timings[id]! });
    }
  } finally {
    for (const m of acquired) options.models.release(m);
  }
  const unetCalls: Record<string, number> = {};
  for (const [m, before] of callsBefore) unetCalls[m.key] = m.unetCalls - before;
  const usedModels = [...callsBefore.keys()].map((m) => ({ key: m.key, folder: m.checkpoint ?? m.folder.dir, provider: m.provider, fallbacks: m.providerFallbacks }));
  return { outputs, timings, unetCalls, cachedNodes, models: usedModels, ms: performance.now() - started };
}

function perStepFunction(
  id: string,
  nodeType: string,
  impl: { evaluate(step: StepContext, inputs: never, params: never, ctx: RunContext): Promise<unknown> },
  inputs: Record<string, unknown>,
  params: Record<string, unknown>,
  ctx: RunContext,
): (step: StepContext) => Promise<unknown> {
  return (step) => {
    let pending = step.memo.get(id);
    if (!pending) {
      pending = impl.evaluate(step, inputs as never, params as never, ctx).catch((err: unknown) => {
        // A call abandoned because the run was cancelled (SessionHost) is the cancellation, not a failure.
        throw ctx.signal.aborted ? new RunCancelledError() : wrapError(err, id, nodeType);
      });
      step.memo.set(id, pending);
    }
    return pending;
  };
}

/** A node's unexpected exception as a NodeExecutionError, the original kept as the cause (for the server log). */
function wrapError(err: unknown, id: string, nodeType: string): Error {
  if (err instanceof NodeExecutionError || err instanceof RunCancelledError) return err;
  const e = err as Error & { file?: string };
  return new NodeExecutionError(id, nodeType, e.message ?? String(err), err, e.file ? 'params.path' : undefined);
}

function hashSignature(type: string, params: Record<string, unknown>, upstream: [string, string, string][], salt: string): string {
  return createHash('sha256').update(JSON.stringify([type, params, upstream, salt])).digest('hex');
}
