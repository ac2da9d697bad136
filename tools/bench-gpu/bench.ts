// The GPU benchmark of issue 8, as a library (tools/bench-gpu/run.ts is its command line; docs/performance.md the
// method). runBench() runs graphs/magicfusion-cross-domain.json ("600,1,1" mode 2, three outputs) on the two folders
// that tools/bench-gpu/make_models.py writes (MODELS/general = base, MODELS/expert = other) with one ModelManager, so
// the first run loads the sessions and the last one (sessions resident) is reported; formatReport() prints one table
// that compares it with the PyTorch reference (reference.json of tools/bench-gpu/reference_sampler.py).

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import type { Graph } from '../../nodes/graph-format.js';
import { applyOverrides } from '../../server/cli/load-graph.js';
import type { ExecutionEvent, RunResult } from '../../server/engine/events.js';
import { executeGraph } from '../../server/execution/executor.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import { toFloat16Array } from '../../server/runtime/float16.js';
import { UPLOAD_SESSION_OPTIONS, sessionOptions } from '../../server/runtime/session-options.js';
import { uploadModel } from '../../server/runtime/upload-model.js';
import type { Provider } from '../../server/runtime/wire.js';
import { decodeNpy } from '../../server/sd/npy.js';
import { SdModel } from '../../server/sd/sd-model.js';
import { median } from '../stats.js';

export interface BenchOptions {
  /** Folder with general/ and expert/. */
  readonly models: string;
  readonly provider: Provider;
  /** Default graphs/magicfusion-cross-domain.json. */
  readonly graphFile?: string;
  readonly steps: number;
  readonly size: number;
  /** Runs with the same loaded sessions; the last is reported. */
  readonly runs: number;
  /** Images, latents (fused.npy, general.npy, expert.npy) and fusegraph.json of the reported run. */
  readonly out: string;
  /** intra-op threads per session. */
  readonly threads: number;
  /** UNet calls timed straight on onnxruntime-node after the runs (0 = none). */
  readonly rawCalls: number;
  /** One more run with every UNet call serialised: what overlapping the two models' calls gains. */
  readonly serialCheck: boolean;
  /** reference.json of reference_sampler.py. */
  readonly torchResult?: string;
  readonly label?: string;
  /** NODE.PARAM=VALUE overrides applied after the bench settings. */
  readonly sets?: readonly string[];
  readonly log?: (line: string) => void;
}

export interface PassMetrics {
  readonly totalMs: number;
  readonly unetCalls: number;
  readonly unetCallsPerModel: Readonly<Record<string, number>>;
  /** Wall time of SdModel.predict: marshalling, worker round trip and the session run. */
  readonly unetMsPerCall: number;
  readonly unetMsMedian: number;
  readonly unetMsPerCallPerModel: Readonly<Record<string, number>>;
  /** Summed wall time of the three DDIMStep nodes. */
  readonly samplingMs: number;
  readonly stepMs: number;
  /** Sampler time outside every UNet call, per step. */
  readonly hostMsPerStep: number;
  readonly hostPctOfStep: number;
  /** Fused sampler: summed UNet call time over the wall time the calls covered (2 = the two models fully overlap). */
  readonly fusedOverlap: number;
  readonly fusedNodeMs: number;
  readonly nodeMs: Readonly<Record<string, number>>;
  readonly peakGpuMiB: number | null;
}

export interface TorchVariant {
  readonly attention: string;
  readonly total_ms: number;
  readonly unet_calls: number;
  readonly unet_ms_per_call: number;
  readonly step_ms?: number;
  readonly host_ms_per_step: number;
  readonly peak_mem_allocated_mib: number | null;
  readonly peak_mem_nvidia_smi_mib: number | null;
  readonly latents: Readonly<Record<string, string>>;
}

export interface TorchResult {
  readonly device: string;
  readonly torch: string;
  readonly precision: string;
  readonly steps: number;
  readonly size: number;
  readonly primary: string;
  readonly variants: Readonly<Record<string, TorchVariant>>;
}

export interface LatentDiff {
  readonly maxAbs: number;
  readonly relL2: number;
  readonly refMaxAbs: number;
}

export interface BenchReport {
  readonly tool: 'tools/bench-gpu/run.ts';
  readonly provider: Provider;
  readonly label: string;
  readonly steps: number;
  readonly size: number;
  readonly runs: number;
  readonly models: { readonly root: string; readonly variant: string; readonly dtype: string };
  readonly threads: number;
  readonly node: string;
  readonly providers: readonly { folder: string; provider: string; fallbacks: readonly { provider: string; error: string }[] }[];
  readonly passes: readonly (PassMetrics & { name: string })[];
  readonly reported: PassMetrics;
  readonly serial: PassMetrics | null;
  readonly bytesPerCall: BytesPerCall | null;
  readonly raw: { readonly msPerCall: number; readonly loadMs: number } | null;
  readonly rawVariants: Readonly<Record<string, number>>;
  readonly torch: (TorchResult & { file: string }) | null;
  /** FuseGraph wall time / the reference's, per reference variant. */
  readonly ratios: Readonly<Record<string, number>>;
  readonly latentDiff: Readonly<Record<string, LatentDiff>> | null;
  readonly gpuMemoryPeakMiB: number | null;
}

// --- instrumentation ----------------------------------------------------------------------------------------------

export interface BytesPerCall {
  readonly h2d: number;
  readonly d2h: number;
  readonly largest: number;
  readonly latent: number;
  /** encoder_hidden_states stay in GPU memory across calls (WebGPU), so they are not part of h2d. */
  readonly conditioningOnDevice: boolean;
}

interface Interval {
  readonly model: string;
  readonly start: number;
  readonly end: number;
}

const DTYPE_BYTES: Readonly<Record<string, number>> = { float32: 4, float16: 2, int64: 8, int32: 4 };

class PredictProbe {
  readonly intervals: Interval[] = [];
  serialise = false;
  bytesPerCall: BytesPerCall | null = null;
  sampleShape: readonly number[] | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly original = SdModel.prototype.predict;

  /** Wraps SdModel.predict (one UNet call) to record its wall interval, optionally serialising every call. */
  install(): void {
    const { original } = this;
    const state = (): PredictProbe => this;
    SdModel.prototype.predict = function (this: SdModel, sample, t, context) {
      const probe = state();
      const call = async (): Promise<Float32Array> => {
        const start = performance.now();
        const out = await original.call(this, sample, t, context);
        probe.intervals.push({ model: path.basename(this.folder.dir), start, end: performance.now() });
        probe.bytesPerCall ??= bytesOf(this, sample.shape[0]!, sample.data.length, context.data.length, out.length);
        probe.sampleShape ??= sample.shape;
        return out;
      };
      if (!probe.serialise) return call();
      const next = probe.chain.then(call, call);
      probe.chain = next.catch(() => undefined);
      return next;
    };
  }

  uninstall(): void {
    SdModel.prototype.predict = this.original;
  }
}

/**
 * The host↔device traffic of one UNet call, and its largest single copy against the latent batch the call feeds
 * (the sample input, 2 rows with CFG): the target is that only latent-sized tensors cross, never the conditioning.
 */
function bytesOf(model: SdModel, batch: number, sample: number, context: number, out: number): BytesPerCall {
  const d = model.info.dtypes;
  const size = (key: string): number => DTYPE_BYTES[d[key] ?? 'float32'] ?? 4;
  const tRank = model.info.parts.unet.inputs.find((i) => i.name === 'timestep')?.shape.length ?? 1;
  const copies = {
    sample: sample * size('unet.sample'),
    encoderHiddenStates: model.conditioningOnDevice ? 0 : context * size('unet.encoder_hidden_states'),
    timestep: (tRank === 0 ? 1 : batch) * size('unet.timestep'),
    out: out * size('unet.sample'),
  };
  return {
    h2d: copies.sample + copies.encoderHiddenStates + copies.timestep,
    d2h: copies.out,
    largest: Math.max(...Object.values(copies)),
    latent: copies.sample,
    conditioningOnDevice: model.conditioningOnDevice,
  };
}

/** Length of the union of the [start, end) intervals clipped to [lo, hi). */
export function unionWithin(list: readonly { start: number; end: number }[], lo: number, hi: number): number {
  const clipped = list
    .map((i) => [Math.max(i.start, lo), Math.min(i.end, hi)] as const)
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let total = 0;
  let curA = 0;
  let curB = -Infinity;
  for (const [a, b] of clipped) {
    if (a > curB) {
      if (curB > curA) total += curB - curA;
      curA = a;
      curB = b;
    } else if (b > curB) curB = b;
  }
  if (curB > curA) total += curB - curA;
  return total;
}

const mean = (xs: readonly number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

// --- GPU memory ---------------------------------------------------------------------------------------------------

/** Polls `nvidia-smi --query-gpu=memory.used` every 100 ms; keeps the peak per phase (MiB). Silent without nvidia-smi. */
class GpuMemoryPoller {
  private proc: ChildProcess | null = null;
  private readonly peaks = new Map<string, number>();
  phase = 'idle';
  private available = false;

  start(): this {
    try {
      const proc = spawn('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-lms', '100'], { stdio: ['ignore', 'pipe', 'ignore'] });
      proc.on('error', () => {
        this.available = false;
      });
      let buf = '';
      proc.stdout?.on('data', (chunk: Buffer) => {
        buf += chunk.toString();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const v = Number.parseInt(buf.slice(0, nl).split(',')[0]!.trim(), 10);
          buf = buf.slice(nl + 1);
          if (!Number.isFinite(v)) continue;
          this.available = true;
          for (const key of [this.phase, 'all']) this.peaks.set(key, Math.max(this.peaks.get(key) ?? 0, v));
        }
      });
      proc.unref();
      this.proc = proc;
    } catch {
      this.proc = null;
    }
    return this;
  }

  peak(phase: string): number | null {
    return this.available ? (this.peaks.get(phase) ?? null) : null;
  }

  stop(): void {
    this.proc?.kill();
  }
}

// --- graph --------------------------------------------------------------------------------------------------------

/** The bundled cross-domain graph pointed at general/ and expert/ on `provider`, with `steps`, `size` and a SaveLatent per sampler. */
export function benchGraph(src: Graph, provider: Provider, steps: number, size: number): Graph {
  const g = structuredClone(src);
  const need = (id: string): NonNullable<Graph['nodes'][string]> => {
    const n = g.nodes[id];
    if (!n) throw new Error(`graph has no node "${id}" (expected graphs/magicfusion-cross-domain.json)`);
    return n;
  };
  need('base_model').params = { ...need('base_model').params, path: 'general', provider };
  need('other_model').params = { ...need('other_model').params, path: 'expert', provider };
  need('noise').params = { ...need('noise').params, width: size, height: size };
  for (const n of Object.values(g.nodes)) if (n.type === 'DDIMStep') n.params = { ...n.params, steps };
  for (const [sampler, name] of [['sample_fused', 'fused'], ['sample_base', 'general'], ['sample_other', 'expert']] as const) {
    need(sampler);
    g.nodes[`bench_latent_${name}`] = { type: 'SaveLatent', params: { filename: `${name}.npy` }, inputs: { latent: { node: sampler, output: 'latent' } } };
  }
  return g;
}

// --- one run ------------------------------------------------------------------------------------------------------

async function timedRun(
  graph: Graph,
  roots: { models: string; input: string; output: string },
  models: ModelManager,
  probe: PredictProbe,
  poller: GpuMemoryPoller,
  phase: string,
  steps: number,
): Promise<{ result: RunResult; metrics: PassMetrics }> {
  const windows = new Map<string, { start: number; end: number }>();
  const from = probe.intervals.length;
  poller.phase = phase;
  const onEvent = (e: ExecutionEvent): void => {
    if (e.type === 'node_started' && e.nodeType === 'DDIMStep') windows.set(e.node, { start: performance.now(), end: NaN });
    if (e.type === 'node_done' && e.nodeType === 'DDIMStep') windows.get(e.node)!.end = performance.now();
  };
  await mkdir(roots.output, { recursive: true });
  const result = await executeGraph(graph, { roots, models, onEvent });
  await new Promise((r) => setTimeout(r, poller.peak('all') === null ? 0 : 250)); // one more memory sample
  poller.phase = 'idle';
  const calls = probe.intervals.slice(from);
  const durations = calls.map((c) => c.end - c.start);
  const perModel: Record<string, number[]> = {};
  for (const c of calls) (perModel[c.model] ??= []).push(c.end - c.start);
  let sampling = 0;
  let host = 0;
  const nodeMs: Record<string, number> = {};
  for (const [node, w] of windows) {
    const len = w.end - w.start;
    nodeMs[node] = len;
    sampling += len;
    host += len - unionWithin(calls, w.start, w.end);
  }
  const totalSteps = steps * windows.size;
  const fused = windows.get('sample_fused');
  const fusedCalls = fused ? calls.filter((c) => c.start >= fused.start && c.end <= fused.end) : [];
  const fusedBusy = fused ? unionWithin(fusedCalls, fused.start, fused.end) : 0;
  const metrics: PassMetrics = {
    totalMs: result.ms,
    unetCalls: calls.length,
    unetCallsPerModel: Object.fromEntries(Object.entries(perModel).map(([k, v]) => [k, v.length])),
    unetMsPerCall: mean(durations),
    unetMsMedian: median(durations),
    unetMsPerCallPerModel: Object.fromEntries(Object.entries(perModel).map(([k, v]) => [k, mean(v)])),
    samplingMs: sampling,
    stepMs: sampling / totalSteps,
    hostMsPerStep: host / totalSteps,
    hostPctOfStep: (host / sampling) * 100,
    fusedOverlap: fusedBusy > 0 ? fusedCalls.reduce((s, c) => s + c.end - c.start, 0) / fusedBusy : NaN,
    fusedNodeMs: fused ? fused.end - fused.start : NaN,
    nodeMs,
    peakGpuMiB: poller.peak(phase),
  };
  return { result, metrics };
}

// --- raw onnxruntime-node probe -----------------------------------------------------------------------------------

/** Median time of UNet calls made straight on onnxruntime-node (main thread, no worker, no executor), same shapes and dtypes. */
export async function rawUnetProbe(
  file: string,
  ep: ort.InferenceSession.ExecutionProviderConfig,
  calls: number,
  sampleShape: readonly number[],
  threads: number,
  /** WebGPU only: encoder_hidden_states copied into GPU memory once, as the engine's session worker does. */
  residentContext = false,
): Promise<{ msPerCall: number; loadMs: number }> {
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(file, sessionOptions(ep, threads));
  const loadMs = performance.now() - t0;
  let uploader: ort.InferenceSession | undefined;
  let onDevice: ort.Tensor | undefined;
  try {
    const meta = new Map(session.inputMetadata.map((m) => [m.name, m]));
    const typeOf = (name: string): string => {
      const m = meta.get(name);
      return m && m.isTensor ? m.type : 'float32';
    };
    const ehs = meta.get('encoder_hidden_states');
    const width = ehs && ehs.isTensor && typeof ehs.shape[2] === 'number' ? ehs.shape[2] : 768;
    const float = (name: string, dims: number[]): ort.Tensor => {
      const data = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 12.9898) * 0.8);
      return typeOf(name) === 'float16' ? new ort.Tensor('float16', toFloat16Array(data), dims) : new ort.Tensor('float32', data, dims);
    };
    const tMeta = meta.get('timestep');
    const batch = sampleShape[0]!;
    const tDims = tMeta && tMeta.isTensor && tMeta.shape.length === 0 ? [] : [batch];
    const tCount = tDims.length ? batch : 1;
    const tType = typeOf('timestep');
    const timestep =
      tType === 'int64'
        ? new ort.Tensor('int64', new BigInt64Array(tCount).fill(501n), tDims)
        : tType === 'float16'
          ? new ort.Tensor('float16', toFloat16Array(new Float32Array(tCount).fill(501)), tDims)
          : new ort.Tensor('float32', new Float32Array(tCount).fill(501), tDims);
    const context = float('encoder_hidden_states', [batch, 77, width]);
    const feeds = { sample: float('sample', [...sampleShape]), timestep, encoder_hidden_states: context };
    if (residentContext) {
      const type = context.type === 'float16' ? 'float16' : 'float32';
      uploader = await ort.InferenceSession.create(uploadModel(type), UPLOAD_SESSION_OPTIONS);
      onDevice = (await uploader.run({ host: context })).device!;
      feeds.encoder_hidden_states = onDevice;
    }
    for (let i = 0; i < 3; i++) await session.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < calls; i++) {
      const s = performance.now();
      await session.run(feeds);
      times.push(performance.now() - s);
    }
    return { msPerCall: median(times), loadMs };
  } finally {
    onDevice?.dispose();
    await uploader?.release();
    await session.release();
  }
}

// --- reference -----------------------------------------------------------------------------------------------------

/** Max |Δ|, relative L2 and max |ref| of FuseGraph's final latents (out/<run>.npy) against the reference's. */
export async function compareLatents(fgDir: string, refDir: string, v: TorchVariant): Promise<Record<string, LatentDiff>> {
  const out: Record<string, LatentDiff> = {};
  for (const [run, file] of Object.entries(v.latents)) {
    const fgFile = path.join(fgDir, `${run}.npy`);
    const refFile = path.join(refDir, file);
    if (!existsSync(fgFile) || !existsSync(refFile)) continue;
    const a = decodeNpy(await readFile(fgFile), fgFile).data;
    const b = decodeNpy(await readFile(refFile), refFile).data;
    if (a.length !== b.length) throw new Error(`${run}: FuseGraph latent has ${a.length} values, the reference ${b.length} (same steps and size?)`);
    let maxAbs = 0;
    let num = 0;
    let den = 0;
    let refMax = 0;
    for (let i = 0; i < a.length; i++) {
      const d = a[i]! - b[i]!;
      maxAbs = Math.max(maxAbs, Math.abs(d));
      num += d * d;
      den += b[i]! * b[i]!;
      refMax = Math.max(refMax, Math.abs(b[i]!));
    }
    out[run] = { maxAbs, relL2: den > 0 ? Math.sqrt(num / den) : Math.sqrt(num), refMaxAbs: refMax };
  }
  return out;
}

// --- the benchmark ------------------------------------------------------------------------------------------------

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const log = o.log ?? ((line: string) => console.error(line));
  const modelsRoot = path.resolve(o.models);
  for (const m of ['general', 'expert']) {
    if (!existsSync(path.join(modelsRoot, m, 'unet', 'model.onnx'))) throw new Error(`${modelsRoot}/${m} is not a model folder (run tools/bench-gpu/make_models.py)`);
  }
  const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const graphFile = o.graphFile ?? path.join(repo, 'graphs', 'magicfusion-cross-domain.json');
  const graph = applyOverrides(benchGraph(JSON.parse(readFileSync(graphFile, 'utf8')) as Graph, o.provider, o.steps, o.size), o.sets ?? []) as Graph;
  const out = path.resolve(o.out);
  const benchInfoFile = path.join(modelsRoot, 'general', 'fusegraph_bench.json');
  const benchInfo = existsSync(benchInfoFile)
    ? (JSON.parse(readFileSync(benchInfoFile, 'utf8')) as { variant?: string; dtype?: string })
    : {};

  const probe = new PredictProbe();
  probe.install();
  const poller = new GpuMemoryPoller().start();
  const models = new ModelManager({ threads: o.threads });
  const input = path.join(out, 'input');
  await mkdir(input, { recursive: true });
  const passes: (PassMetrics & { name: string })[] = [];
  let last: RunResult | null = null;
  let serial: PassMetrics | null = null;
  let raw: { msPerCall: number; loadMs: number } | null = null;
  const rawVariants: Record<string, number> = {};
  let dtype = benchInfo.dtype;
  try {
    try {
      for (let i = 1; i <= o.runs; i++) {
        const dir = i === o.runs ? out : path.join(out, `run${i}`);
        const pass = await timedRun(graph, { models: modelsRoot, input, output: dir }, models, probe, poller, `run${i}`, o.steps);
        passes.push({ name: `run${i}`, ...pass.metrics });
        last = pass.result;
        const m = pass.metrics;
        log(
          `run ${i}/${o.runs}: ${(m.totalMs / 1000).toFixed(2)} s, ${m.unetCalls} UNet calls, ${fmt(m.unetMsPerCall)} ms/call, ` +
            `host ${fmt(m.hostMsPerStep, 3)} ms/step, models on ${pass.result.models.map((x) => x.provider).join('/')}`,
        );
        if (i < o.runs) await rm(dir, { recursive: true, force: true });
      }
      if (o.serialCheck) {
        probe.serialise = true;
        const dir = path.join(out, 'serial');
        serial = (await timedRun(graph, { models: modelsRoot, input, output: dir }, models, probe, poller, 'serial', o.steps)).metrics;
        probe.serialise = false;
        await rm(dir, { recursive: true, force: true });
        log(`serialised UNet calls: fused sampler ${(serial.fusedNodeMs / 1000).toFixed(2)} s`);
      }
      const general = (await models.listModels(modelsRoot)).find((m) => m.path === 'general');
      dtype ??= general?.dtypes?.['unet.sample'];
    } finally {
      await models.dispose();
    }
    if (o.rawCalls > 0) {
      // The raw loop feeds the sample shape the engine's calls had.
      const latent = probe.sampleShape ?? [2, 4, o.size / 8, o.size / 8];
      const unetFile = path.join(modelsRoot, 'general', 'unet', 'model.onnx');
      raw = await rawUnetProbe(unetFile, o.provider, o.rawCalls, latent, o.threads);
      log(`raw onnxruntime-node UNet: ${fmt(raw.msPerCall)} ms/call (median of ${o.rawCalls}; session created in ${(raw.loadMs / 1000).toFixed(1)} s)`);
      if (o.provider === 'webgpu') {
        // What the Node binding lets us change on WebGPU (onnxruntime-node session options: EP options and output
        // locations; it has no graph capture). The engine keeps the conditioning in GPU memory, with default options.
        const variants: [string, ort.InferenceSession.ExecutionProviderConfig, boolean][] = [
          ['webgpu, encoder_hidden_states in GPU memory (as the engine feeds it)', 'webgpu', true],
          ['webgpu preferredLayout NHWC', { name: 'webgpu', preferredLayout: 'NHWC' }, false],
          ['webgpu validationMode disabled', { name: 'webgpu', validationMode: 'disabled' }, false],
        ];
        for (const [name, ep, resident] of variants) {
          try {
            rawVariants[name] = (await rawUnetProbe(unetFile, ep, o.rawCalls, latent, o.threads, resident)).msPerCall;
            log(`raw onnxruntime-node UNet, ${name}: ${fmt(rawVariants[name])} ms/call`);
          } catch (err) {
            log(`raw onnxruntime-node UNet, ${name}: failed: ${(err as Error).message.split('\n')[0]}`);
          }
        }
      }
    }
  } finally {
    poller.stop();
    probe.uninstall();
  }

  const reported = passes.at(-1)!;
  let torch: (TorchResult & { file: string }) | null = null;
  let latentDiff: Record<string, LatentDiff> | null = null;
  const ratios: Record<string, number> = {};
  if (o.torchResult) {
    const file = path.resolve(o.torchResult);
    torch = { ...(JSON.parse(await readFile(file, 'utf8')) as TorchResult), file };
    if (torch.steps !== o.steps || torch.size !== o.size) log(`warning: the reference ran ${torch.steps} steps at ${torch.size}px, FuseGraph ${o.steps} at ${o.size}px`);
    for (const [name, v] of Object.entries(torch.variants)) ratios[name] = reported.totalMs / v.total_ms;
    const primary = torch.variants[torch.primary];
    if (primary) latentDiff = await compareLatents(out, path.dirname(file), primary);
  }
  const { name: _name, ...reportedMetrics } = reported;
  const report: BenchReport = {
    tool: 'tools/bench-gpu/run.ts',
    provider: o.provider,
    label: o.label ?? `FuseGraph ${o.provider}`,
    steps: o.steps,
    size: o.size,
    runs: o.runs,
    models: { root: modelsRoot, variant: benchInfo.variant ?? 'unknown', dtype: dtype ?? 'unknown' },
    threads: o.threads,
    node: process.version,
    providers: (last?.models ?? []).map((x) => ({ folder: x.folder, provider: x.provider, fallbacks: x.fallbacks })),
    passes,
    reported: reportedMetrics,
    serial,
    bytesPerCall: probe.bytesPerCall,
    raw,
    rawVariants,
    torch,
    ratios,
    latentDiff,
    gpuMemoryPeakMiB: poller.peak('all'),
  };
  await writeFile(path.join(out, 'fusegraph.json'), `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

// --- report -------------------------------------------------------------------------------------------------------

export function fmt(v: number | null | undefined, digits = 2): string {
  return v === null || v === undefined || Number.isNaN(v) ? '—' : v.toFixed(digits);
}

function table(columns: readonly { name: string; cells: readonly string[] }[], rows: readonly string[]): string[] {
  const widths = [Math.max(...rows.map((r) => r.length)), ...columns.map((c) => Math.max(c.name.length, ...c.cells.map((x) => x.length)))];
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[0]!) : c.padStart(widths[i]!))).join('  ');
  return [line(['', ...columns.map((c) => c.name)]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map((r, i) => line([r, ...columns.map((c) => c.cells[i] ?? '')]))];
}

/** The one comparison table, then the supporting lines (ratios, first run, bytes per call, overlap, raw probe, latents). */
export function formatReport(r: BenchReport): string[] {
  const m = r.reported;
  const rows = [
    'total wall time, three outputs (s)',
    'UNet calls',
    'UNet ms/call (mean)',
    'step time (ms)',
    'host overhead per step (ms)',
    'host overhead (% of a step)',
    'peak GPU memory, nvidia-smi (MiB)',
    'peak allocated, torch (MiB)',
    'wall time ratio (FuseGraph / this)',
  ];
  const mib = (v: number | null): string => (v === null ? '—' : String(v));
  const columns = [
    {
      name: r.label,
      cells: [fmt(m.totalMs / 1000), String(m.unetCalls), fmt(m.unetMsPerCall), fmt(m.stepMs), fmt(m.hostMsPerStep, 3), fmt(m.hostPctOfStep), mib(m.peakGpuMiB), '—', '1.00'],
    },
  ];
  for (const [name, v] of Object.entries(r.torch?.variants ?? {})) {
    const stepMs = v.step_ms ?? NaN;
    columns.push({
      name: `PyTorch ${name}${name === r.torch!.primary ? ' (ref)' : ''}`,
      cells: [
        fmt(v.total_ms / 1000),
        String(v.unet_calls),
        fmt(v.unet_ms_per_call),
        fmt(stepMs),
        fmt(v.host_ms_per_step, 3),
        fmt((v.host_ms_per_step / stepMs) * 100),
        mib(v.peak_mem_nvidia_smi_mib),
        mib(v.peak_mem_allocated_mib),
        fmt(r.ratios[name]),
      ],
    });
  }
  const lines = [
    `MagicFusion cross-domain ("600,1,1" mode 2, three outputs), ${r.steps} DDIM steps, ${r.size}×${r.size}, ${r.models.variant} models (${r.models.dtype}), ` +
      `sessions resident (run ${r.runs} of ${r.runs})` +
      (r.torch ? `; PyTorch ${r.torch.torch} ${r.torch.precision} on ${r.torch.device}` : ''),
    ...table(columns, rows),
  ];
  for (const [name, ratio] of Object.entries(r.ratios)) {
    lines.push(`speed: FuseGraph wall time = ${ratio.toFixed(3)}× PyTorch ${name} (target ≤ 0.70×: ${ratio <= 0.7 ? 'met' : 'NOT met'})`);
  }
  lines.push(`host overhead target ≤ 2 % of a step: ${m.hostPctOfStep <= 2 ? 'met' : 'NOT met'} (${fmt(m.hostPctOfStep)} %)`);
  lines.push(`first run, sessions loading: ${(r.passes[0]!.totalMs / 1000).toFixed(2)} s`);
  if (r.bytesPerCall) {
    const b = r.bytesPerCall;
    const kib = (n: number): string => `${(n / 1024).toFixed(0)} KiB`;
    lines.push(
      `bytes per UNet call: ${kib(b.h2d)} in (sample + timestep${b.conditioningOnDevice ? '; encoder_hidden_states stay on the GPU' : ' + encoder_hidden_states'}), ${kib(b.d2h)} out; ` +
        `largest copy ${kib(b.largest)} vs the latent batch's ${kib(b.latent)} (target no copy larger than the latent: ${b.largest <= b.latent ? 'met' : 'NOT met'})`,
    );
  }
  lines.push(
    `fused sampler: ${(m.fusedNodeMs / 1000).toFixed(2)} s; the two models' UNet calls overlap ×${fmt(m.fusedOverlap)} (1 = not at all` +
      // On WebGPU the workers take turns on the process's one context: a call's interval includes its wait.
      `${r.provider === 'webgpu' ? '; on WebGPU the calls take turns, so this counts waiting, not GPU concurrency' : ''})` +
      (r.serial ? `; serialised: ${(r.serial.fusedNodeMs / 1000).toFixed(2)} s, so overlapping gains ${fmt(((r.serial.fusedNodeMs - m.fusedNodeMs) / r.serial.fusedNodeMs) * 100, 1)} %` : ''),
  );
  if (r.raw) lines.push(`raw onnxruntime-node UNet call (no worker, no executor): ${fmt(r.raw.msPerCall)} ms; FuseGraph's call (median) adds ${fmt(m.unetMsMedian - r.raw.msPerCall)} ms`);
  for (const [k, v] of Object.entries(r.rawVariants)) lines.push(`raw UNet call, ${k}: ${fmt(v)} ms`);
  for (const [run, d] of Object.entries(r.latentDiff ?? {})) {
    lines.push(`latent ${run} vs PyTorch ${r.torch!.primary}: max |Δ| ${d.maxAbs.toExponential(3)}, relative L2 ${d.relL2.toExponential(3)} (max |ref| ${d.refMaxAbs.toFixed(3)})`);
  }
  return lines;
}
