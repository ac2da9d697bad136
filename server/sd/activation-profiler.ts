import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { ModelFolder } from './model-folder.js';
import type { ActivationStore, MeasuredActivation, UnetActivation } from './activation-store.js';
import type { ModelInfo, SdModel } from './sd-model.js';
import { endStraysOnce, parentMarker } from '../runtime/child-lifecycle.js';
import { envWithTmp, privateTmp } from '../runtime/private-tmp.js';

const PROBE = fileURLToPath(new URL('../runtime/activation-probe.js', import.meta.url));

/** Growth of the resident high-water mark a measured size must reach to stand clear of the process's own noise. */
const SIGNAL_BYTES = 16 * 2 ** 20;
/** Latent side the probe stops at whatever it measured (a 1024² latent is an 8192² image on SD). */
const MAX_SIDE = 1024;
/** A probe that takes longer is stopped and its model left to the config-based estimate. */
const PROBE_TIMEOUT_MS = 10 * 60_000;

export type ProfilerEvent =
  | { readonly type: 'measured'; readonly folder: string; readonly sha256: string; readonly activation: MeasuredActivation }
  | { readonly type: 'known'; readonly folder: string; readonly sha256: string }
  | { readonly type: 'failed'; readonly folder: string; readonly error: string };

export interface ProfilerOptions {
  readonly store: ActivationStore;
  /** Each outcome, in order (tests observe measuring and reuse through it). */
  readonly onEvent?: (e: ProfilerEvent) => void;
  readonly log?: (message: string) => void;
}

/** The UNet's input layout, as its session declares it, that the probe feeds (activation-probe.js). */
interface ProbeLayout {
  readonly rows: number;
  readonly channels: number;
  readonly textLength: number;
  readonly hidden: number;
  readonly sampleType: string;
  readonly timestepType: string;
  readonly timestepRank: number;
  readonly contextType: string;
  /** Latent side of the warm-up call: the smallest the UNet can halve down through all its levels. */
  readonly firstSide: number;
  /** Set when the export has a fixed latent size: then only that size is measured. */
  readonly fixedSide: number | null;
}

const dim = (shape: readonly (number | string)[] | undefined, axis: number): number | null => {
  const d = shape?.[axis];
  return typeof d === 'number' && d > 0 ? d : null;
};

export function probeLayout(folder: ModelFolder, info: ModelInfo): ProbeLayout {
  const inputs = info.parts.unet.inputs;
  const find = (name: string) => inputs.find((i) => i.name === name);
  const sample = find('sample');
  const timestep = find('timestep');
  const context = find('encoder_hidden_states');
  const levels = folder.unetConfig?.block_out_channels;
  const unetFactor = Array.isArray(levels) && levels.length > 0 ? 2 ** (levels.length - 1) : 1;
  const h = dim(sample?.shape, 2);
  const w = dim(sample?.shape, 3);
  const crossDim = folder.unetConfig?.cross_attention_dim;
  return {
    rows: dim(sample?.shape, 0) ?? 1,
    channels: info.latentChannels,
    textLength: dim(context?.shape, 1) ?? 77,
    hidden: info.hiddenSize ?? (typeof crossDim === 'number' ? crossDim : 768),
    sampleType: sample?.type ?? 'float32',
    timestepType: timestep?.type ?? 'float32',
    timestepRank: timestep?.shape.length ?? 1,
    contextType: context?.type ?? 'float32',
    firstSide: Math.max(8, unetFactor),
    fixedSide: h !== null && h === w ? h : null,
  };
}

interface ProbePoint {
  readonly side: number;
  readonly pixels: number;
  readonly bytes: number;
}

/**
 * Fits `a·n + b·n²` through the two largest measurements, with a, b ≥ 0: when noise makes one term negative, the
 * other alone is taken at the larger of the two points' ratios, which keeps the fit an upper bound of both.
 */
export function fitActivation(points: readonly ProbePoint[]): UnetActivation {
  const usable = points.filter((p) => p.bytes > 0);
  if (usable.length === 0) throw new Error('no measurement rose above the process\'s own memory');
  if (usable.length === 1) return { perPixel: usable[0]!.bytes / usable[0]!.pixels, perPixelSquared: 0 };
  const [p1, p2] = usable.slice(-2) as [ProbePoint, ProbePoint];
  const b = (p2.bytes / p2.pixels - p1.bytes / p1.pixels) / (p2.pixels - p1.pixels);
  const a = p1.bytes / p1.pixels - b * p1.pixels;
  if (b < 0) return { perPixel: Math.max(p1.bytes / p1.pixels, p2.bytes / p2.pixels), perPixelSquared: 0 };
  if (a < 0) return { perPixel: 0, perPixelSquared: Math.max(p1.bytes / p1.pixels ** 2, p2.bytes / p2.pixels ** 2) };
  return { perPixel: a, perPixelSquared: b };
}

/**
 * Measures one UNet file in a child process (activation-probe.js, CPU provider, lowest CPU priority) and fits its
 * per-row factors. GPU providers are assumed to hold activations of the same size.
 */
export async function measureUnet(unetFile: string, layout: ProbeLayout, signal?: AbortSignal): Promise<MeasuredActivation> {
  const request = { unet: unetFile, ...layout, stopBytes: SIGNAL_BYTES, maxSide: MAX_SIDE };
  // Probes (or session processes) a previous server left behind go before this one's first starts (child-lifecycle.ts).
  endStraysOnce();
  // Its own TMPDIR, removed once it has ended, killed or not (private-tmp.ts): ONNX Runtime leaves a log file there.
  const tmp = privateTmp('fusegraph-probe-');
  let child;
  try {
    child = spawn(process.execPath, [PROBE, JSON.stringify(request)], {
      stdio: ['pipe', 'pipe', 'pipe'], // stdin stays open while this process lives: the probe ends with it
      timeout: PROBE_TIMEOUT_MS,
      killSignal: 'SIGKILL',
      // FUSEGRAPH_PARENT: the probe's watchdog (parent-watchdog.js) ends it with this process, even inside a call.
      env: { ...envWithTmp(tmp), ...parentMarker() },
      ...(signal ? { signal } : {}),
    });
  } catch (err) {
    tmp.remove();
    throw err;
  }
  child.once('exit', tmp.remove);
  try {
    if (child.pid !== undefined) setPriority(child.pid, 19);
  } catch {
    // not allowed here: it then competes with runs at normal priority, still on one thread
  }
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += String(d)));
  child.stderr.on('data', (d: Buffer) => (err += String(d)));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c));
  }).finally(tmp.remove);
  if (code !== 0) throw new Error(`the probe exited with ${code ?? 'a signal'}: ${err.trim().split('\n').slice(-3).join(' | ')}`);
  const points = (JSON.parse(out) as { points: ProbePoint[] }).points.map((p) => ({
    side: p.side, pixels: p.pixels, bytes: p.bytes / layout.rows,
  }));
  return { ...fitActivation(points), points, measuredAt: new Date().toISOString() };
}

/**
 * Measures each UNet the first time a model folder using it is loaded, in the background: one probe at a time,
 * never twice for one file hash in a process, and never again once the store has it (so not after a restart).
 * Until then, admission uses the config-based estimate (memory-model.ts).
 */
export class ActivationProfiler {
  private queue: Promise<void> = Promise.resolve();
  private readonly started = new Set<string>();
  private readonly closing = new AbortController();

  constructor(private readonly options: ProfilerOptions) {}

  /** Called when a model folder is loaded; returns at once, the work runs after the earlier ones. */
  modelLoaded(model: Pick<SdModel, 'folder' | 'info' | 'fileHashes'>): void {
    const { folder } = model;
    this.queue = this.queue.then(() => this.profile(model)).catch((err: unknown) => {
      if (this.closing.signal.aborted) return; // stopped by close(), not a failure
      const error = (err as Error).message;
      this.options.log?.(`could not measure the UNet activations of ${folder.dir} (admission keeps its config-based estimate): ${error}`);
      this.options.onEvent?.({ type: 'failed', folder: folder.dir, error });
    });
  }

  /** Resolves once every model loaded so far has been measured or found in the store. */
  async idle(): Promise<void> {
    let seen: Promise<void>;
    do {
      seen = this.queue;
      await seen;
    } while (seen !== this.queue);
  }

  /** Stops a probe in progress (its model is measured on a later start) and takes no new work. */
  close(): Promise<void> {
    this.closing.abort();
    return this.idle();
  }

  private async profile(model: Pick<SdModel, 'folder' | 'info' | 'fileHashes'>): Promise<void> {
    const { folder, info } = model;
    if (this.closing.signal.aborted) return;
    const store = this.options.store;
    const file = folder.parts.unet;
    let sha = await store.knownHash(file);
    if (sha === null) {
      const st = await stat(file);
      // The model's own hashes, which SaveImage records too: each part is read once per load.
      sha = (await model.fileHashes()).unet!;
      await store.rememberHash(file, sha, st);
    }
    if (await store.get(sha)) {
      this.options.onEvent?.({ type: 'known', folder: folder.dir, sha256: sha });
      return;
    }
    if (this.started.has(sha)) return; // its probe failed in this process (and said so): tried again after a restart
    this.started.add(sha);
    const activation = await measureUnet(file, probeLayout(folder, info), this.closing.signal);
    await store.put(sha, activation);
    this.options.onEvent?.({ type: 'measured', folder: folder.dir, sha256: sha, activation });
  }
}
