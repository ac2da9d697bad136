/**
 * buildUnetGraph against the committed PyTorch reference (tools/checkpoint-reference/make_fixtures.py, LDM's own
 * UNetModel code), built from the tiny checkpoints' own tensors and run in ONNX Runtime's CPU provider; plus
 * random-weight builds for what the fixtures do not pin down (float16 vs float32, op formulations, streaming).
 *
 * Tolerances were measured (max abs error / relative L2; reference outputs are calibrated to std ≈ 1):
 * float32 graphs against the reference ≤ 8.6e-6 / 1.5e-6 → asserted at 1e-4 / 1e-5; float16 graphs against the
 * float32 reference ≤ 5.0e-3 / 1.2e-3, and against the float32 graph of random weights ≤ 5.3e-3 / 2.2e-3 → asserted
 * at 2e-2 / 5e-3; the operator formulations against each other ≤ 3.5e-6 / 1.8e-6 → asserted at 1e-4 / 1e-5.
 * Each test reports its measured error as a diagnostic.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as ort from 'onnxruntime-node';

import type { UnetArchitecture } from '../../server/checkpoint/architecture.js';
import type { OpChoices } from '../../server/checkpoint/build/graph-ops.js';
import { buildUnetGraph, unetParameterShapes } from '../../server/checkpoint/build/unet-graph.js';
import { openTensorFile } from '../../server/checkpoint/formats/open-tensor-file.js';
import type { TensorFile } from '../../server/checkpoint/tensor-file.js';
import { prefixedWeights, type GraphPrecision, type Weights } from '../../server/checkpoint/weights.js';
import { decodeNpy } from '../../server/sd/npy.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/checkpoints');
const REFERENCE = path.join(FIXTURES, 'reference');
const UNET_PREFIX = 'model.diffusion_model.';

interface NpyRef {
  file: string;
  shape: number[];
}
interface UnetCase {
  name: string;
  kind: string;
  checkpoint: string;
  weights: 'ema' | 'non-ema';
  inputs: { sample: NpyRef; timestep: number; context: NpyRef };
  outputs: { out: NpyRef };
}

/** The manifest's tiny-sd1 UNet: model_channels 32, channel_mult (1, 2, 2), attention_resolutions (1, 2), 8 heads. */
const TINY_SD1: UnetArchitecture = {
  inChannels: 4,
  outChannels: 4,
  modelChannels: 32,
  channelMult: [1, 2, 2],
  numResBlocks: 2,
  attentionLevels: [true, true, false],
  transformerDepth: 1,
  contextDim: 64,
  numHeads: 8,
  headChannels: null,
  linearProjection: false,
};
/** tiny-sd2: model_channels 64, channel_mult (1, 2), head width 64, Linear proj_in/proj_out. */
const TINY_SD2: UnetArchitecture = {
  inChannels: 4,
  outChannels: 4,
  modelChannels: 64,
  channelMult: [1, 2],
  numResBlocks: 1,
  attentionLevels: [true, true],
  transformerDepth: 1,
  contextDim: 64,
  numHeads: null,
  headChannels: 64,
  linearProjection: true,
};
/** Random-weight model exercising depth 2, attention off at the first level and head-width heads. */
const RANDOM_ARCH: UnetArchitecture = {
  inChannels: 4,
  outChannels: 4,
  modelChannels: 32,
  channelMult: [1, 2, 2],
  numResBlocks: 1,
  attentionLevels: [false, true, true],
  transformerDepth: 2,
  contextDim: 48,
  numHeads: null,
  headChannels: 16,
  linearProjection: true,
};
const ARCH_BY_FILE: Record<string, UnetArchitecture> = {
  'tiny-sd1.ckpt': TINY_SD1,
  'tiny-sd1-fp16.safetensors': TINY_SD1,
  'tiny-sd2.safetensors': TINY_SD2,
};

const TOL = {
  float32: { maxAbs: 1e-4, relL2: 1e-5 },
  float16: { maxAbs: 2e-2, relL2: 5e-3 },
} as const;

let tmp: string;
let cases: UnetCase[];
const files = new Map<string, TensorFile>();

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-unet-graph-'));
  const manifest = JSON.parse(await readFile(path.join(REFERENCE, 'manifest.json'), 'utf8')) as { cases: UnetCase[] };
  cases = manifest.cases.filter((c) => c.kind === 'unet');
});

after(async () => {
  for (const f of files.values()) await f.close();
  await rm(tmp, { recursive: true, force: true });
});

async function fixtureWeights(checkpoint: string): Promise<Weights> {
  let f = files.get(checkpoint);
  if (f === undefined) {
    f = await openTensorFile(path.join(FIXTURES, checkpoint));
    files.set(checkpoint, f);
  }
  return prefixedWeights(f, UNET_PREFIX);
}

async function npy(ref: NpyRef): Promise<{ data: Float32Array; shape: number[] }> {
  const r = decodeNpy(await readFile(path.join(REFERENCE, ref.file)), ref.file);
  assert.deepEqual(r.shape, ref.shape);
  return r;
}

let built = 0;
async function build(
  weights: Weights,
  arch: UnetArchitecture,
  precision: GraphPrecision,
  choices?: Partial<OpChoices>,
): Promise<ort.InferenceSession> {
  const dir = path.join(tmp, `unet-${built++}`);
  await buildUnetGraph(weights, arch, dir, { precision, ...(choices ? { choices } : {}) });
  return ort.InferenceSession.create(path.join(dir, 'model.onnx'), { executionProviders: ['cpu'], intraOpNumThreads: 1 });
}

interface Inputs {
  sample: { data: Float32Array; shape: number[] };
  timestep: Float32Array;
  context: { data: Float32Array; shape: number[] };
}

async function runUnet(session: ort.InferenceSession, inputs: Inputs): Promise<{ data: Float32Array; dims: readonly number[] }> {
  const out = await session.run({
    sample: new ort.Tensor('float32', inputs.sample.data, inputs.sample.shape),
    timestep: new ort.Tensor('float32', inputs.timestep, [inputs.timestep.length]),
    encoder_hidden_states: new ort.Tensor('float32', inputs.context.data, inputs.context.shape),
  });
  const y = out.out_sample;
  assert.ok(y, 'graph has an out_sample output');
  assert.equal(y.type, 'float32');
  return { data: y.data as Float32Array, dims: y.dims };
}

function compare(t: TestContext, label: string, got: Float32Array, want: Float32Array, tol: { maxAbs: number; relL2: number }): void {
  assert.equal(got.length, want.length);
  let maxAbs = 0;
  let num = 0;
  let den = 0;
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!;
    assert.ok(Number.isFinite(g), `${label}: output ${i} is ${g}`);
    const d = g - want[i]!;
    maxAbs = Math.max(maxAbs, Math.abs(d));
    num += d * d;
    den += want[i]! * want[i]!;
  }
  const relL2 = Math.sqrt(num / den);
  t.diagnostic(`${label}: max abs ${maxAbs.toExponential(2)}, rel L2 ${relL2.toExponential(2)}`);
  assert.ok(maxAbs <= tol.maxAbs, `${label}: max abs error ${maxAbs} > ${tol.maxAbs}`);
  assert.ok(relL2 <= tol.relL2, `${label}: relative L2 error ${relL2} > ${tol.relL2}`);
}

async function caseInputs(c: UnetCase): Promise<Inputs> {
  const sample = await npy(c.inputs.sample);
  return { sample, timestep: new Float32Array(sample.shape[0]!).fill(c.inputs.timestep), context: await npy(c.inputs.context) };
}

describe('UNet graph against the PyTorch reference', () => {
  // EMA cases need an EMA weight view (model_ema.* flattened names): wired by the checkpoint loader's tests.
  const sessions = new Map<string, Promise<ort.InferenceSession>>();
  const sessionFor = (checkpoint: string, precision: GraphPrecision): Promise<ort.InferenceSession> => {
    const key = `${checkpoint}/${precision}`;
    let s = sessions.get(key);
    if (s === undefined) {
      s = fixtureWeights(checkpoint).then((w) => build(w, ARCH_BY_FILE[checkpoint]!, precision));
      sessions.set(key, s);
    }
    return s;
  };
  after(async () => {
    for (const s of sessions.values()) await (await s).release();
  });

  for (const name of [
    'sd1-unet-t999',
    'sd1-unet-t500',
    'sd1-fp16-unet-t999',
    'sd1-fp16-unet-t500',
    'sd2-unet-t999',
    'sd2-unet-t500',
    'sd1-unet-nonsquare-8x12-t500',
    'sd1-unet-context154-t999',
  ]) {
    test(`${name}, float32 graph`, async (t) => {
      const c = cases.find((x) => x.name === name);
      assert.ok(c, `manifest has case ${name}`);
      assert.equal(c.weights, 'non-ema');
      const y = await runUnet(await sessionFor(c.checkpoint, 'float32'), await caseInputs(c));
      assert.deepEqual(y.dims, c.outputs.out.shape);
      compare(t, name, y.data, (await npy(c.outputs.out)).data, TOL.float32);
    });
  }

  for (const name of ['sd1-unet-t999', 'sd2-unet-t500']) {
    test(`${name}, float16 graph (weights and compute fp16, GroupNorm/LayerNorm statistics fp32)`, async (t) => {
      const c = cases.find((x) => x.name === name);
      assert.ok(c, `manifest has case ${name}`);
      const y = await runUnet(await sessionFor(c.checkpoint, 'float16'), await caseInputs(c));
      assert.deepEqual(y.dims, c.outputs.out.shape);
      compare(t, `${name} fp16`, y.data, (await npy(c.outputs.out)).data, TOL.float16);
    });
  }
});

/** Deterministic pseudo-random weights for `arch` (norm scales near 1, biases small, 1/√fan_in elsewhere). */
function randomWeights(arch: UnetArchitecture, seed = 7): Weights & { reads: () => number; maxInFlight: () => number } {
  const shapes = unetParameterShapes(arch);
  let inFlight = 0;
  let maxInFlight = 0;
  let reads = 0;
  const values = (name: string): Float32Array => {
    const shape = shapes.get(name)!;
    const n = shape.reduce((a, b) => a * b, 1);
    let s = seed >>> 0;
    for (let i = 0; i < name.length; i++) s = (Math.imul(s ^ name.charCodeAt(i), 16777619) >>> 0) || 1;
    const out = new Float32Array(n);
    const normScale = shape.length === 1 && name.endsWith('.weight');
    const fanIn = shape.length > 1 ? n / shape[0]! : 1;
    for (let i = 0; i < n; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      const u = (s >>> 0) / 4294967296 - 0.5;
      out[i] = normScale ? 1 + 0.4 * u : shape.length === 1 ? 0.2 * u : (3.4 * u) / Math.sqrt(fanIn);
    }
    return out;
  };
  return {
    has: (name) => shapes.has(name),
    shape: (name) => {
      const s = shapes.get(name);
      if (s === undefined) throw new Error(`no tensor ${name}`);
      return s;
    },
    names: () => shapes.keys(),
    float32: async (name) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        // A real read yields to the event loop: give concurrent reads the chance to overlap, were there any.
        await new Promise<void>((resolve) => setImmediate(resolve));
        reads++;
        return values(name);
      } finally {
        inFlight--;
      }
    },
    reads: () => reads,
    maxInFlight: () => maxInFlight,
  };
}

function randomInputs(arch: UnetArchitecture, batch: number, h: number, w: number, seq: number): Inputs {
  const fill = (n: number, k: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7371 + k) * 1.3);
  return {
    sample: { data: fill(batch * arch.inChannels * h * w, 1), shape: [batch, arch.inChannels, h, w] },
    timestep: Float32Array.from({ length: batch }, (_, i) => 981 - 347 * i),
    context: { data: fill(batch * seq * arch.contextDim, 2), shape: [batch, seq, arch.contextDim] },
  };
}

describe('UNet graph from random weights', () => {
  test('streams the weights one tensor at a time into weights.pb and reports progress', async () => {
    const weights = randomWeights(RANDOM_ARCH);
    const dir = path.join(tmp, 'streaming');
    const progress: [number, number][] = [];
    await buildUnetGraph(weights, RANDOM_ARCH, dir, { precision: 'float32', onProgress: (d, n) => progress.push([d, n]) });
    assert.equal(weights.maxInFlight(), 1, 'never more than one weight read outstanding');
    const total = unetParameterShapes(RANDOM_ARCH).size;
    assert.equal(weights.reads(), total, 'every tensor read exactly once');
    assert.ok(progress.length >= total);
    assert.deepEqual(progress.at(-1), [total, total]);
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i]![0] >= progress[i - 1]![0], 'progress never goes back');
    let params = 0;
    for (const s of unetParameterShapes(RANDOM_ARCH).values()) params += s.reduce((a, b) => a * b, 1);
    const side = (await stat(path.join(dir, 'weights.pb'))).size;
    const model = (await stat(path.join(dir, 'model.onnx'))).size;
    // Big tensors live in the side file (small biases/norms stay inline), the graph file holds structure only.
    assert.ok(side > params * 4 * 0.9 && side < params * 4 * 1.1, `weights.pb has ${side} bytes for ${params} floats`);
    assert.ok(model < side / 10, `model.onnx ${model} bytes`);
  });

  test('float16 build runs and stays close to the float32 build; dynamic batch, size and sequence', async (t) => {
    const weights = randomWeights(RANDOM_ARCH);
    const s32 = await build(weights, RANDOM_ARCH, 'float32');
    const s16 = await build(weights, RANDOM_ARCH, 'float16');
    try {
      for (const [batch, h, w, seq] of [
        [2, 8, 8, 77],
        [1, 12, 20, 154],
        [3, 4, 4, 5],
      ] as const) {
        const inputs = randomInputs(RANDOM_ARCH, batch, h, w, seq);
        const y32 = await runUnet(s32, inputs);
        const y16 = await runUnet(s16, inputs);
        assert.deepEqual(y32.dims, [batch, RANDOM_ARCH.outChannels, h, w]);
        assert.deepEqual(y16.dims, y32.dims);
        compare(t, `fp16 vs fp32 ${batch}x${h}x${w} seq ${seq}`, y16.data, y32.data, TOL.float16);
      }
    } finally {
      await s32.release();
      await s16.release();
    }
  });

  test('every operator formulation computes the same function', async (t) => {
    const weights = randomWeights(RANDOM_ARCH, 11);
    const inputs = randomInputs(RANDOM_ARCH, 2, 8, 12, 77);
    const variants: Partial<OpChoices>[] = [
      { groupNorm: 'group-normalization' },
      { groupNorm: 'instance-normalization' },
      { attention: 'matmul-softmax' },
      { attention: 'multi-head-attention' },
      { gelu: 'onnx-gelu' },
      { gelu: 'erf' },
      { gelu: 'ms-gelu' },
      { silu: 'sigmoid-mul' },
      { silu: 'quick-gelu' },
      { geglu: 'slice' },
      { geglu: 'split-weights' },
    ];
    const base = await build(weights, RANDOM_ARCH, 'float32');
    const want = (await runUnet(base, inputs)).data;
    await base.release();
    for (const v of variants) {
      const s = await build(weights, RANDOM_ARCH, 'float32', v);
      try {
        compare(t, JSON.stringify(v), (await runUnet(s, inputs)).data, want, { maxAbs: 1e-4, relL2: 1e-5 });
      } finally {
        await s.release();
      }
    }
  });

  test('a checkpoint missing a tensor is refused with its name', async () => {
    const weights = randomWeights(TINY_SD1);
    const missing = 'input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight';
    const holed: Weights = {
      ...weights,
      has: (n) => n !== missing && weights.has(n),
      shape: (n) => {
        if (n === missing) throw new Error(`the checkpoint has no tensor for ${n}`);
        return weights.shape(n);
      },
    };
    await assert.rejects(buildUnetGraph(holed, TINY_SD1, path.join(tmp, 'holed'), { precision: 'float32' }), (e: Error) =>
      e.message.includes(missing),
    );
  });
});
