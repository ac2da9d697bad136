import { mkdtemp, rm } from 'node:fs/promises';
import os, { availableParallelism } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Graph } from '../../nodes/graph-format.js';
import { executeGraph } from '../../server/execution/executor.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import type { SdModel, Tensor32 } from '../../server/sd/sd-model.js';
import { sessionOptions } from '../../server/runtime/session-options.js';
import { randnFloat32 } from '../../server/sd/rng.js';
import { DDIMSchedule, parseSchedulerConfig } from '../../server/sd/scheduler.js';
import { SD1_SCHEDULER_CONFIG, writeTinyModel } from '../tiny-models/make-tiny-model.js';
import { median } from '../stats.js';

export interface SamplingOverhead {
  readonly steps: number;
  readonly rounds: number;
  /** The loop written against onnxruntime-node on the main thread, with a session of its own. */
  readonly rawMsPerCall: number;
  /** The same hand-written loop on FuseGraph's own sessions (SdModel.predict, through the session worker). */
  readonly sameSessionsMsPerCall: number;
  readonly executorMsPerCall: number;
  /** The executor against the hand-written loop on the same sessions (median of the rounds' ratios): what the graph machinery costs. */
  readonly overheadPct: number;
  /** Time per step outside the UNet calls (sampler math, graph machinery): the hand loop's and the executor's. */
  readonly sameSessionsHostMs: number;
  readonly executorHostMs: number;
  /** The same-sessions loop against the main-thread one: what running inference in a session process costs. */
  readonly workerPct: number;
  /** What FuseGraph's call path (hop to the session process, copies, conversions) adds to one UNet call of the bench's shapes. */
  readonly callPathMs: number;
  /** The same with the model's sessions in a worker thread (`--session-isolation thread`), measured alongside. */
  readonly threadCallPathMs: number;
}

const STEPS = 50;
const ROUNDS = 15;
const SIZE = 512; // 64×64 latent, batch 2 with CFG: the SD 1.x shapes
const LATENT = [4, SIZE / 8, SIZE / 8];

function graph(): Graph {
  const l = (node: string, output: string): { node: string; output: string } => ({ node, output });
  return {
    format: 'fusegraph', version: 2,
    nodes: {
      m: { type: 'LoadModel', params: { path: 'bench', provider: 'cpu' } },
      p: { type: 'EncodePrompt', params: { text: 'a red star on the left' }, inputs: { model: l('m', 'model') } },
      n: { type: 'EncodePrompt', params: { text: '' }, inputs: { model: l('m', 'model') } },
      z: { type: 'NoiseLatent', params: { seed: 0, width: SIZE, height: SIZE }, inputs: { model: l('m', 'model') } },
      e: { type: 'PredictNoise', params: { guidance_scale: 7.5 }, inputs: { model: l('m', 'model'), positive: l('p', 'cond'), negative: l('n', 'cond') } },
      s: { type: 'DDIMStep', params: { steps: STEPS }, inputs: { model: l('m', 'model'), noise: l('e', 'noise'), latent: l('z', 'latent') } },
      o: { type: 'SaveLatent', params: { filename: 'bench.npy' }, inputs: { latent: l('s', 'latent') } },
    },
  };
}

type Predict = (sample: Float32Array, t: number) => Promise<Float32Array>;

/** The 50-step CFG loop written by hand: no executor, no graph; `predict` is one UNet call on the CFG batch. */
function handLoop(predict: Predict): () => Promise<number> {
  const schedule = new DDIMSchedule(parseSchedulerConfig(SD1_SCHEDULER_CONFIG), STEPS);
  const x = randnFloat32(0, [1, ...LATENT]);
  const size = x.length;
  const sample = new Float32Array(2 * size);
  const eps = new Float32Array(size);
  return async () => {
    x.set(randnFloat32(0, [1, ...LATENT]));
    const t0 = performance.now();
    for (let i = 0; i < STEPS; i++) {
      sample.set(x, 0);
      sample.set(x, size);
      const o = await predict(sample, schedule.timesteps[i]!);
      for (let j = 0; j < size; j++) eps[j] = o[j]! + 7.5 * (o[size + j]! - o[j]!);
      schedule.step(x, eps, i, x);
    }
    return (performance.now() - t0) / STEPS;
  };
}

/** One UNet call on the CFG batch straight on onnxruntime-node on this thread, with FuseGraph's session options. */
async function mainThreadUnet(dir: string, context: Float32Array): Promise<{ predict: Predict; release: () => Promise<void> }> {
  const unet = await ort.InferenceSession.create(path.join(dir, 'unet', 'model.onnx'), sessionOptions('cpu', availableParallelism()));
  const ctx = new ort.Tensor('float32', context, [2, 77, context.length / 154]);
  const predict: Predict = async (sample, t) => {
    const out = await unet.run({ sample: new ort.Tensor('float32', sample, [2, ...LATENT]), timestep: new ort.Tensor('float32', Float32Array.of(t, t), [2]), encoder_hidden_states: ctx });
    return out.out_sample!.data as Float32Array;
  };
  return { predict, release: () => unet.release() };
}

/** FuseGraph's own sessions: SdModel.predict, as PredictNoise calls it. */
function samePredict(model: SdModel, context: Tensor32): Predict {
  return (sample, t) => model.predict({ data: sample, shape: [2, ...LATENT] }, t, context);
}

/** Wraps this model's predict (one UNet call) to sum the time spent in it; returns a reader of that sum (ms). */
function timeCalls(model: SdModel): () => number {
  const predict = model.predict.bind(model);
  let total = 0;
  model.predict = async (sample, t, context) => {
    const t0 = performance.now();
    try {
      return await predict(sample, t, context);
    } finally {
      total += performance.now() - t0;
    }
  };
  return () => total;
}

/**
 * FuseGraph's call paths alone: one call through each worker minus one direct session.run on the same inputs,
 * interleaved call by call so that load on the machine hits all alike; the median of each one's differences.
 */
async function callPaths(viaWorkers: readonly Predict[], direct: Predict): Promise<number[]> {
  const sample = new Float32Array(2 * LATENT.reduce((a, b) => a * b)).fill(0.1);
  const diffs = viaWorkers.map((): number[] => []);
  const timed = async (predict: Predict): Promise<number> => {
    const t0 = performance.now();
    await predict(sample, 500);
    return performance.now() - t0;
  };
  for (let i = 0; i < 150; i++) {
    for (const [w, viaWorker] of viaWorkers.entries()) {
      const worker = await timed(viaWorker);
      diffs[w]!.push(worker - (await timed(direct)));
    }
  }
  return diffs.map(median);
}

export async function benchSamplingOverhead(): Promise<SamplingOverhead> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-bench-'));
  try {
    const dir = path.join(root, 'models', 'bench');
    await writeTinyModel(dir, { seed: 3, unetWidth: 64 });
    const models = new ModelManager();
    const threadModels = new ModelManager({ isolation: 'thread' });
    try {
      const roots = { models: path.join(root, 'models'), input: root, output: path.join(root, 'out') };
      const model = await models.acquire(dir, 'cpu');
      const enc = await model.encodeText([model.tokenizer.encodePadded(''), model.tokenizer.encodePadded('a red star on the left')]);
      const main = await mainThreadUnet(dir, enc.data);
      const same = samePredict(model, enc);
      const mainLoop = handLoop(main.predict);
      const sameLoop = handLoop(same);
      const unetMs = timeCalls(model);
      // Interleaved rounds (the first is a warm-up), the order alternating so that neither side always runs second.
      // The overheads are medians of each round's paired ratio, so load that drifts across rounds cancels out.
      const rawTimes: number[] = [];
      const sameTimes: number[] = [];
      const execTimes: number[] = [];
      const sameHost: number[] = [];
      const execHost: number[] = [];
      // Each loop's wall time per step, and its time outside the UNet calls per step (the host work).
      const timed = async (loop: () => Promise<number>, times: number[], host: number[]): Promise<void> => {
        const before = unetMs();
        const perStep = await loop();
        times.push(perStep);
        host.push(perStep - (unetMs() - before) / STEPS);
      };
      const executor = async (): Promise<number> => (await executeGraph(graph(), { roots, models })).timings.s! / STEPS;
      for (let r = 0; r < ROUNDS + 1; r++) {
        rawTimes.push(await mainLoop());
        if (r % 2 === 0) {
          await timed(sameLoop, sameTimes, sameHost);
          await timed(executor, execTimes, execHost);
        } else {
          await timed(executor, execTimes, execHost);
          await timed(sameLoop, sameTimes, sameHost);
        }
      }
      // After the rounds, with everything warm (timeCalls' wrapper adds two clock reads to the process side).
      const threadModel = await threadModels.acquire(dir, 'cpu');
      const [callPathMs, threadCallPathMs] = await callPaths([same, samePredict(threadModel, enc)], main.predict);
      threadModels.release(threadModel);
      models.release(model);
      await main.release();
      const pairedPct = (a: readonly number[], b: readonly number[]): number => median(a.slice(1).map((x, i) => ((x - b[i + 1]!) / b[i + 1]!) * 100));
      return {
        steps: STEPS,
        rounds: ROUNDS,
        rawMsPerCall: median(rawTimes.slice(1)),
        sameSessionsMsPerCall: median(sameTimes.slice(1)),
        executorMsPerCall: median(execTimes.slice(1)),
        overheadPct: pairedPct(execTimes, sameTimes),
        sameSessionsHostMs: median(sameHost.slice(1)),
        executorHostMs: median(execHost.slice(1)),
        workerPct: pairedPct(sameTimes, rawTimes),
        callPathMs: callPathMs!,
        threadCallPathMs: threadCallPathMs!,
      };
    } finally {
      await models.dispose();
      await threadModels.dispose();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
