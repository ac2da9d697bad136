import { NodeCache } from '../engine/cache.js';
import { endStraysOnce } from '../runtime/child-lifecycle.js';
import { collectGarbage } from '../runtime/garbage.js';
import type { SessionIsolation } from '../runtime/session-channel.js';
import { ActivationProfiler, type ProfilerEvent } from '../sd/activation-profiler.js';
import { ActivationStore } from '../sd/activation-store.js';
import { CheckpointCache, DEFAULT_CHECKPOINT_CACHE_BYTES, checkpointCacheDir } from '../sd/checkpoint-cache.js';
import { ModelManager } from '../sd/model-manager.js';
import { IdleRelease } from './idle-release.js';

export interface ModelResidencyOptions {
  /** Where measured UNet activations are kept; none are measured without it. */
  readonly dataDir?: string;
  readonly maxModelMemory?: number;
  /** Bytes of checkpoint builds kept in `<dataDir>/checkpoints` (least recently used go first). */
  readonly maxCheckpointCache?: number;
  readonly maxCacheMemory?: number;
  readonly threads?: number;
  /** Where each model's sessions run; default a process per model (session-channel.ts). */
  readonly isolation?: SessionIsolation;
  /** Release models and cache after this many ms without a run; 0 = never. */
  readonly unloadIdleMs: number;
  readonly log: (message: string, err?: unknown) => void;
  readonly onActivationEvent?: (e: ProfilerEvent) => void;
  /** Called after an idle release freed at least one model (a worker announces its new resident list). */
  readonly onReleased?: () => Promise<void>;
}

/** What an executing process (serve, or a scale-out worker) keeps across runs, and the pieces that keep it in check. */
export interface ModelResidency {
  readonly models: ModelManager;
  readonly cache: NodeCache;
  /** Wrap each run's execution in `idle.around` so release waits for idleness. */
  readonly idle: IdleRelease;
  readonly activations: ActivationStore | undefined;
  /** Stops the idle clock and any activation probe, and disposes every model. */
  close(): Promise<void>;
}

/**
 * One model manager and one node cache for all runs of a process (sessions load once, unchanged nodes are served
 * cached); each UNet's activations measured once, in the background, on its first load (admission uses them); and
 * both released after `unloadIdleMs` without a run.
 */
export function modelResidency(o: ModelResidencyOptions): ModelResidency {
  // Session processes and probes a previous instance left running (it was killed mid-call) are ended at start.
  endStraysOnce((m) => o.log(m));
  const activations = o.dataDir !== undefined ? new ActivationStore(o.dataDir) : undefined;
  const profiler = activations
    ? new ActivationProfiler({ store: activations, log: o.log, ...(o.onActivationEvent ? { onEvent: o.onActivationEvent } : {}) })
    : undefined;
  const models = new ModelManager({
    checkpoints: new CheckpointCache({
      dir: checkpointCacheDir(o.dataDir ?? '.fusegraph'),
      maxBytes: o.maxCheckpointCache ?? DEFAULT_CHECKPOINT_CACHE_BYTES,
      log: (m) => o.log(m),
    }),
    ...(profiler ? { onLoaded: (m) => profiler.modelLoaded(m) } : {}),
    ...(o.maxModelMemory !== undefined ? { maxBytes: o.maxModelMemory } : {}),
    ...(o.threads !== undefined ? { threads: o.threads } : {}),
    ...(o.isolation !== undefined ? { isolation: o.isolation } : {}),
  });
  const cache = new NodeCache(o.maxCacheMemory !== undefined ? { maxBytes: o.maxCacheMemory } : {});
  const idle = new IdleRelease(o.unloadIdleMs, async () => {
    cache.clear();
    const released = await models.releaseIdle();
    // The cache's and the last runs' tensors are garbage now: collected at once, not whenever V8 next needs heap.
    collectGarbage();
    if (!released) return;
    o.log(`idle for ${o.unloadIdleMs / 1000} s: released ${released} model(s) and the node cache (--unload-idle)`);
    await o.onReleased?.();
  }, o.log);
  return {
    models, cache, idle, activations,
    async close() {
      idle.close();
      await profiler?.close();
      await models.dispose();
    },
  };
}
