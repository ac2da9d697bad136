import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Graph } from '../../nodes/graph-format.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TOKENIZER_FIXTURE = path.resolve(REPO_ROOT, 'server', 'sd', 'clip-tokenizer');

export function bundledGraph(name: string): Graph {
  return JSON.parse(readFileSync(path.join(REPO_ROOT, 'graphs', `${name}.json`), 'utf8')) as Graph;
}

/** A small txt2img graph on one model folder (relative to the models root). */
export function txt2imgGraph(modelPath: string, opts: { steps?: number; size?: number; seed?: number; prompt?: string } = {}): Graph {
  const link = (node: string, output: string): { node: string; output: string } => ({ node, output });
  return {
    format: 'fusegraph',
    version: 2,
    nodes: {
      model: { type: 'LoadModel', params: { path: modelPath, provider: 'cpu' } },
      pos: { type: 'EncodePrompt', params: { text: opts.prompt ?? 'a red circle' }, inputs: { model: link('model', 'model') } },
      neg: { type: 'EncodePrompt', params: { text: '' }, inputs: { model: link('model', 'model') } },
      noise: {
        type: 'NoiseLatent',
        params: { seed: opts.seed ?? 0, width: opts.size ?? 64, height: opts.size ?? 64, batch: 1 },
        inputs: { model: link('model', 'model') },
      },
      eps: { type: 'PredictNoise', params: { guidance_scale: 7.5 }, inputs: { model: link('model', 'model'), positive: link('pos', 'cond'), negative: link('neg', 'cond') } },
      sample: { type: 'DDIMStep', params: { steps: opts.steps ?? 4 }, inputs: { model: link('model', 'model'), noise: link('eps', 'noise'), latent: link('noise', 'latent') } },
      decode: { type: 'Decode', inputs: { model: link('model', 'model'), latent: link('sample', 'latent') } },
      save: { type: 'SaveImage', params: { prefix: 'test' }, inputs: { image: link('decode', 'image') } },
    },
  };
}

export interface SnbGraphOptions {
  /** Model folders (relative to the models root) in the base and other roles. */
  readonly base: string;
  readonly other: string;
  /** Folder whose scheduler config drives the DDIMStep; the base model when absent. */
  readonly scheduler?: string;
  readonly promptBase: string;
  readonly promptOther: string;
  readonly seed: number;
  /** Image width and height in pixels. */
  readonly size: number;
  readonly batch?: number;
  readonly guidance?: number;
  readonly kBase?: number;
  readonly kOther?: number;
  readonly blend?: 'argmax' | 'soft';
  /** 1: base alone while t > switchT, then SNB; 2: SNB while t > switchT, then base alone (MagicFusion's modes). */
  readonly mode: 1 | 2;
  readonly switchT: number;
  readonly steps: number;
  /** Also save the starting latent as xT.npy. */
  readonly saveStart?: boolean;
  /** A third model blended in as BlendNoise.c, its saliency (k = kOther) against the base model's uncond. */
  readonly third?: { readonly model: string; readonly prompt: string };
}

/**
 * One fused sampling loop wired as the bundled MagicFusion graphs wire it (base text encoder for every prompt,
 * the other model's saliency against the base model's unconditional noise), ending in SaveLatent x.npy.
 */
export function snbGraph(o: SnbGraphOptions): Graph {
  const model = (node: string): { node: string; output: string } => ({ node, output: 'model' });
  const out = (node: string, output: string): { node: string; output: string } => ({ node, output });
  const baseNoise = out('eps_base', 'noise');
  const snb = out('snb', 'noise');
  const guidance = o.guidance ?? 10;
  return {
    format: 'fusegraph',
    version: 2,
    nodes: {
      base: { type: 'LoadModel', params: { path: o.base, provider: 'cpu' } },
      other: { type: 'LoadModel', params: { path: o.other, provider: 'cpu' } },
      ...(o.scheduler ? { sched: { type: 'LoadModel', params: { path: o.scheduler, provider: 'cpu' } } } : {}),
      p_base: { type: 'EncodePrompt', params: { text: o.promptBase }, inputs: { model: model('base') } },
      p_other: { type: 'EncodePrompt', params: { text: o.promptOther }, inputs: { model: model('base') } },
      uncond: { type: 'EncodePrompt', params: { text: '' }, inputs: { model: model('base') } },
      noise: { type: 'NoiseLatent', params: { seed: o.seed, width: o.size, height: o.size, batch: o.batch ?? 1 }, inputs: { model: model('base') } },
      eps_base: { type: 'PredictNoise', params: { guidance_scale: guidance }, inputs: { model: model('base'), positive: out('p_base', 'cond'), negative: out('uncond', 'cond') } },
      eps_other: { type: 'PredictNoise', params: { guidance_scale: guidance }, inputs: { model: model('other'), positive: out('p_other', 'cond'), negative: out('uncond', 'cond') } },
      sal_base: { type: 'SaliencyMask', params: { k: o.kBase ?? 1 }, inputs: { noise: baseNoise } },
      sal_other: { type: 'SaliencyMask', params: { k: o.kOther ?? 1 }, inputs: { noise: out('eps_other', 'noise'), uncond_from: baseNoise } },
      ...(o.third
        ? {
            third: { type: 'LoadModel', params: { path: o.third.model, provider: 'cpu' } },
            p_third: { type: 'EncodePrompt', params: { text: o.third.prompt }, inputs: { model: model('base') } },
            eps_third: { type: 'PredictNoise', params: { guidance_scale: guidance }, inputs: { model: model('third'), positive: out('p_third', 'cond'), negative: out('uncond', 'cond') } },
            sal_third: { type: 'SaliencyMask', params: { k: o.kOther ?? 1 }, inputs: { noise: out('eps_third', 'noise'), uncond_from: baseNoise } },
          }
        : {}),
      snb: {
        type: 'BlendNoise',
        params: { mode: o.blend ?? 'argmax' },
        inputs: {
          a: baseNoise, b: out('eps_other', 'noise'), saliency_a: out('sal_base', 'saliency'), saliency_b: out('sal_other', 'saliency'),
          ...(o.third ? { c: out('eps_third', 'noise'), saliency_c: out('sal_third', 'saliency') } : {}),
        },
      },
      switch: {
        type: 'SwitchAtTimestep',
        params: { t: o.switchT },
        inputs: o.mode === 2 ? { before: snb, after: baseNoise } : { before: baseNoise, after: snb },
      },
      ddim: {
        type: 'DDIMStep',
        params: { steps: o.steps, eta: 0 },
        inputs: { model: model(o.scheduler ? 'sched' : 'base'), noise: out('switch', 'noise'), latent: out('noise', 'latent') },
      },
      save_x: { type: 'SaveLatent', params: { filename: 'x.npy' }, inputs: { latent: out('ddim', 'latent') } },
      ...(o.saveStart ? { save_xt: { type: 'SaveLatent', params: { filename: 'xT.npy' }, inputs: { latent: out('noise', 'latent') } } } : {}),
    },
  };
}
