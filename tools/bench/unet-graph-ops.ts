/**
 * Measures the operator formulations of the checkpoint UNet builder (server/checkpoint/build/graph-ops.ts
 * OpChoices) on ONNX Runtime's CPU provider, one choice flipped at a time from the defaults, and optionally a
 * torch-exported ONNX graph of the same weights.
 *
 *   node --import tsx tools/bench/unet-graph-ops.ts [--dir D] [--runs N] [--threads T] [--batch B] [--size S]
 *     [--seq L] [--only groupNorm,silu] [--no-torch]
 *
 * With --dir, D holds `weights.safetensors` (LDM names, no prefix), `arch.json` (a UnetArchitecture) and optionally
 * `torch.onnx` (torch.onnx.export of the same weights with inputs sample/timestep/encoder_hidden_states); without
 * it a mid-size UNet (model_channels 128, SD's layout) gets random weights. Prints one line per variant: median ms.
 */

import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import ort from 'onnxruntime-node';

import type { UnetArchitecture } from '../../server/checkpoint/architecture.js';
import { buildUnetGraph, unetParameterShapes } from '../../server/checkpoint/build/unet-graph.js';
import { DEFAULT_OP_CHOICES, type OpChoices } from '../../server/checkpoint/build/graph-ops.js';
import { openTensorFile } from '../../server/checkpoint/formats/open-tensor-file.js';
import { prefixedWeights, type Weights } from '../../server/checkpoint/weights.js';
import { sessionOptions } from '../../server/runtime/session-options.js';
import { median } from '../stats.js';

const MID_ARCH: UnetArchitecture = {
  inChannels: 4,
  outChannels: 4,
  modelChannels: 128,
  channelMult: [1, 2, 4, 4],
  numResBlocks: 2,
  attentionLevels: [true, true, true, false],
  transformerDepth: 1,
  contextDim: 768,
  numHeads: 8,
  headChannels: null,
  linearProjection: false,
};

/** Deterministic pseudo-random weights for `arch` (xorshift; scale 1/√fan_in like torch's default init). */
function randomUnetWeights(arch: UnetArchitecture, seed = 1): Weights {
  const shapes = unetParameterShapes(arch);
  return {
    has: (name) => shapes.has(name),
    shape: (name) => shapes.get(name)!,
    names: () => shapes.keys(),
    float32: async (name) => {
      const shape = shapes.get(name)!;
      const n = shape.reduce((a, b) => a * b, 1);
      const fanIn = shape.length > 1 ? n / shape[0]! : 1;
      let s = (seed * 2654435761 + n) >>> 0 || 1;
      const out = new Float32Array(n);
      const isNormWeight = shape.length === 1 && /norm|in_layers\.0|out_layers\.0|out\.0/.test(name) && name.endsWith('weight');
      for (let i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >>> 17;
        s ^= s << 5;
        const u = (s >>> 0) / 4294967296 - 0.5;
        out[i] = isNormWeight ? 1 + 0.2 * u : shape.length === 1 ? 0.1 * u : (2 * u) / Math.sqrt(fanIn);
      }
      return out;
    },
  };
}

/**
 * Median time of `a` and of `b` and the median of the per-round ratios b/a, running them alternately (A, B, A, B, ...)
 * so that a load change on the machine hits both alike.
 */
async function abTime(
  a: ort.InferenceSession,
  b: ort.InferenceSession,
  feeds: Record<string, ort.Tensor>,
  runs: number,
): Promise<{ a: number; b: number; ratio: number }> {
  await a.run(feeds); // warm-up
  await b.run(feeds);
  const ta: number[] = [];
  const tb: number[] = [];
  const ratios: number[] = [];
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? [a, b] : [b, a];
    const t: number[] = [];
    for (const s of order) {
      const t0 = performance.now();
      await s.run(feeds);
      t.push(performance.now() - t0);
    }
    const [msA, msB] = i % 2 === 0 ? [t[0]!, t[1]!] : [t[1]!, t[0]!];
    ta.push(msA);
    tb.push(msB);
    ratios.push(msB / msA);
  }
  return { a: median(ta), b: median(tb), ratio: median(ratios) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string' },
      runs: { type: 'string', default: '5' },
      threads: { type: 'string', default: String(Math.min(os.availableParallelism(), 4)) },
      batch: { type: 'string', default: '2' },
      size: { type: 'string', default: '32' },
      seq: { type: 'string', default: '77' },
      only: { type: 'string' },
      'no-torch': { type: 'boolean', default: false },
    },
  });
  const runs = Number(values.runs);
  const threads = Number(values.threads);
  const batch = Number(values.batch);
  const size = Number(values.size);
  const seq = Number(values.seq);

  let arch = MID_ARCH;
  let weights: Weights;
  let close = async (): Promise<void> => {};
  let torchModel: string | null = null;
  if (values.dir !== undefined) {
    arch = JSON.parse(await readFile(path.join(values.dir, 'arch.json'), 'utf8')) as UnetArchitecture;
    const file = await openTensorFile(path.join(values.dir, 'weights.safetensors'));
    weights = prefixedWeights(file, '');
    close = () => file.close();
    const t = path.join(values.dir, 'torch.onnx');
    if (existsSync(t)) torchModel = t;
  } else {
    weights = randomUnetWeights(arch);
  }

  const rand = (n: number, scale = 1): Float32Array => Float32Array.from({ length: n }, (_, i) => scale * Math.sin(i * 12.9898 + 78.233));
  const feeds = {
    sample: new ort.Tensor('float32', rand(batch * arch.inChannels * size * size), [batch, arch.inChannels, size, size]),
    timestep: new ort.Tensor('float32', Float32Array.from({ length: batch }, (_, i) => 500 + i), [batch]),
    encoder_hidden_states: new ort.Tensor('float32', rand(batch * seq * arch.contextDim), [batch, seq, arch.contextDim]),
  };

  const flips: [string, Partial<OpChoices>][] = [
    ['defaults', {}],
    ['groupNorm=group-normalization', { groupNorm: 'group-normalization' }],
    ['groupNorm=instance-normalization', { groupNorm: 'instance-normalization' }],
    ['attention=matmul-softmax', { attention: 'matmul-softmax' }],
    ['attention=multi-head-attention', { attention: 'multi-head-attention' }],
    ['gelu=onnx-gelu', { gelu: 'onnx-gelu' }],
    ['gelu=ms-gelu', { gelu: 'ms-gelu' }],
    ['gelu=erf', { gelu: 'erf' }],
    ['silu=sigmoid-mul', { silu: 'sigmoid-mul' }],
    ['silu=quick-gelu', { silu: 'quick-gelu' }],
    ['geglu=slice', { geglu: 'slice' }],
    ['geglu=split-weights', { geglu: 'split-weights' }],
  ];
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-unet-ops-'));
  const options = sessionOptions('cpu', threads);
  const open = async (label: string, choices: Partial<OpChoices>): Promise<ort.InferenceSession> => {
    const out = path.join(tmp, label.replace(/[^a-z0-9-]/gi, '_'));
    await buildUnetGraph(weights, arch, out, { precision: 'float32', choices });
    return ort.InferenceSession.create(path.join(out, 'model.onnx'), options);
  };
  console.log(`arch mc=${arch.modelChannels} mult=[${arch.channelMult.join(',')}] batch=${batch} latent=${size}² seq=${seq} threads=${threads} runs=${runs}`);
  console.log(`defaults: ${JSON.stringify(DEFAULT_OP_CHOICES)}`);
  console.log('variant (one choice flipped)           defaults ms  variant ms  variant/defaults (median of paired ratios)');
  const base = await open('defaults', {});
  try {
    for (const [label, choices] of flips) {
      const key = Object.keys(choices)[0] as keyof OpChoices | undefined;
      if (key === undefined || DEFAULT_OP_CHOICES[key] === choices[key]) continue;
      if (values.only !== undefined && !values.only.split(',').some((o) => label.startsWith(o))) continue;
      const variant = await open(label, choices);
      try {
        const r = await abTime(base, variant, feeds, runs);
        console.log(`${label.padEnd(38)} ${r.a.toFixed(1).padStart(10)} ${r.b.toFixed(1).padStart(11)}  ${r.ratio.toFixed(3)}`);
      } finally {
        await variant.release();
      }
    }
    if (torchModel !== null && !values['no-torch']) {
      const torch = await ort.InferenceSession.create(torchModel, options);
      try {
        const r = await abTime(base, torch, feeds, runs);
        console.log(`${'torch.onnx.export (opset 17)'.padEnd(38)} ${r.a.toFixed(1).padStart(10)} ${r.b.toFixed(1).padStart(11)}  ${r.ratio.toFixed(3)}  (built/torch ${(1 / r.ratio).toFixed(3)})`);
      } finally {
        await torch.release();
      }
    }
  } finally {
    await base.release();
    await close();
    await rm(tmp, { recursive: true, force: true });
  }
}

await main();
