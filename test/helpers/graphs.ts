import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Graph } from '../../nodes/graph-format.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TOKENIZER_FIXTURE = path.resolve(REPO_ROOT, '..', 'shared', 'fixtures', 'clip-tokenizer');

export function bundledGraph(name: string): Graph {
  return JSON.parse(readFileSync(path.join(REPO_ROOT, 'graphs', `${name}.json`), 'utf8')) as Graph;
}

/** A small txt2img graph on one model folder (relative to the models root). */
export function txt2imgGraph(modelPath: string, opts: { steps?: number; size?: number; seed?: number; prompt?: string } = {}): Graph {
  const link = (node: string, output: string): { node: string; output: string } => ({ node, output });
  return {
    format: 'fusegraph',
    version: 1,
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
