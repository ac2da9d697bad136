import { mkdtemp, rm } from 'node:fs/promises';
import os, { availableParallelism } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Graph } from '../../nodes/graph-format.js';
import { executeGraph } from '../../server/engine/executor.js';
import { ModelManager } from '../../server/runtime/model-manager.js';
import { sessionOptions } from '../../server/runtime/session-options.js';
import { randnFloat32 } from '../../server/sd/rng.js';
import { DDIMSchedule, parseSchedulerConfig } from '../../server/sd/scheduler.js';
import { SD1_SCHEDULER_CONFIG, writeTinyModel } from '../tiny-models/make-tiny-model.js';

export interface SamplingOverhead {
  readonly steps: number;
  readonly rawMsPerCall: number;
  readonly executorMsPerCall: number;
  readonly overheadPct: number;
  /** What FuseGraph's call path (worker hop, copies, conversions) adds to one UNet call of the bench's shapes. */
  readonly callPathMs: number;
}

const STEPS = 50;
const ROUNDS = 9;
const SIZE = 512; // 64×64 latent, batch 2 with CFG: the SD 1.x shapes

function graph(): Graph {
  const l = (node: string, output: string): { node: string; output: string } => ({ node, output });
  return {
    format: 'fusegraph', version: 1,
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

/** The same 50-step CFG loop written directly against onnxruntime-node, with FuseGraph's session options: no executor, no worker. */
async function rawLoop(dir: string, context: Float32Array): Promise<{ run: () => Promise<number>; release: () => Promise<void> }> {
  const unet = await ort.InferenceSession.create(path.join(dir, 'unet', 'model.onnx'), sessionOptions('cpu', availableParallelism()));
  const schedule = new DDIMSchedule(parseSchedulerConfig(SD1_SCHEDULER_CONFIG), STEPS);
  const shape = [1, 4, SIZE / 8, SIZE / 8];
  const x = randnFloat32(0, shape);
  const size = x.length;
  const sample = new Float32Array(2 * size);
  const eps = new Float32Array(size);
  const ctx = new ort.Tensor('float32', context, [2, 77, context.length / 154]);
  const run = async (): Promise<number> => {
    const t0 = performance.now();
    for (let i = 0; i < STEPS; i++) {
      sample.set(x, 0);
      sample.set(x, size);
      const t = schedule.timesteps[i]!;
      const out = await unet.run({ sample: new ort.Tensor('float32', sample, [2, ...shape.slice(1)]), timestep: new ort.Tensor('float32', Float32Array.of(t, t), [2]), encoder_hidden_states: ctx });
      const o = out.out_sample!.data as Float32Array;
      for (let j = 0; j < size; j++) eps[j] = o[j]! + 7.5 * (o[size + j]! - o[j]!);
      schedule.step(x, eps, i, x);
    }
    return (performance.now() - t0) / STEPS;
  };
  return { run, release: () => unet.release() };
}

/**
 * FuseGraph's call path alone: SdModel.predict (through the worker) minus a direct session.run on the bench's own
 * shapes, interleaved call by call so that load on the machine hits both alike; the median of the differences.
 */
async function callPath(models: ModelManager, dir: string): Promise<number> {
  const model = await models.acquire(dir, 'cpu');
  try {
    const enc = await model.encodeText([model.tokenizer.encodePadded(''), model.tokenizer.encodePadded('x')]);
    const shape = [2, 4, SIZE / 8, SIZE / 8];
    const sample = { data: new Float32Array(shape.reduce((a, b) => a * b)).fill(0.1), shape };
    const unet = await ort.InferenceSession.create(path.join(dir, 'unet', 'model.onnx'), sessionOptions('cpu', availableParallelism()));
    const ctx = new ort.Tensor('float32', enc.data, enc.shape);
    const diffs: number[] = [];
    for (let i = 0; i < 150; i++) {
      let t0 = performance.now();
      await model.predict(sample, 500, enc);
      const viaWorker = performance.now() - t0;
      t0 = performance.now();
      await unet.run({ sample: new ort.Tensor('float32', sample.data, shape), timestep: new ort.Tensor('float32', Float32Array.of(500, 500), [2]), encoder_hidden_states: ctx });
      diffs.push(viaWorker - (performance.now() - t0));
    }
    await unet.release();
    return median(diffs);
  } finally {
    models.release(model);
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export async function benchSamplingOverhead(): Promise<SamplingOverhead> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-bench-'));
  try {
    const dir = path.join(root, 'models', 'bench');
    await writeTinyModel(dir, { seed: 3, unetWidth: 64 });
    const models = new ModelManager();
    try {
      const roots = { models: path.join(root, 'models'), input: root, output: path.join(root, 'out') };
      const model = await models.acquire(dir, 'cpu');
      const enc = await model.encodeText([model.tokenizer.encodePadded(''), model.tokenizer.encodePadded('a red star on the left')]);
      models.release(model);
      const raw = await rawLoop(dir, enc.data);
      // Interleaved rounds, median of each: other load on the machine hits both sides alike.
      const rawTimes: number[] = [];
      const execTimes: number[] = [];
      for (let r = 0; r < ROUNDS + 1; r++) {
        rawTimes.push(await raw.run());
        const result = await executeGraph(graph(), { roots, models });
        execTimes.push(result.timings.s! / STEPS);
      }
      const callPathMs = await callPath(models, dir);
      await raw.release();
      const rawMsPerCall = median(rawTimes.slice(1));
      const executorMsPerCall = median(execTimes.slice(1));
      return { steps: STEPS, rawMsPerCall, executorMsPerCall, overheadPct: ((executorMsPerCall - rawMsPerCall) / rawMsPerCall) * 100, callPathMs };
    } finally {
      await models.dispose();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
