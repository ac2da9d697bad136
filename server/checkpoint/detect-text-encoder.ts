/**
 * The text encoder from its canonical tensors: CLIP in HF transformers naming (`text_model.*`, SD-1) or OpenCLIP
 * (`token_embedding`, `transformer.resblocks.N.*`, SD-2). Width from the token embedding, layers by counting, heads
 * = max(1, width / 64) (head width 64 in both real encoders).
 */
import type { TextEncoderArchitecture } from './architecture.js';
import { checkSpecs, countIndexed, type KeySpec, type KeyTable } from './key-layouts.js';
import type { Detection } from './detect-unet.js';

export interface TextEncoderShape extends TextEncoderArchitecture {
  /** MLP hidden width (3072 for ViT-L/14, 4096 for ViT-H); the builder reads it from the fc1 / c_fc shape too. */
  readonly intermediate: number;
}

export function detectTextEncoder(t: KeyTable, kind: 'clip' | 'open-clip'): Detection<TextEncoderShape> {
  const clip = kind === 'clip';
  const tok = t.get(clip ? 'text_model.embeddings.token_embedding.weight' : 'token_embedding.weight')?.shape;
  const pos = t.get(clip ? 'text_model.embeddings.position_embedding.weight' : 'positional_embedding')?.shape;
  const layerPrefix = clip ? 'text_model.encoder.layers.' : 'transformer.resblocks.';
  const layers = countIndexed(t.keys(), layerPrefix);
  if (!tok || tok.length !== 2) return { ok: false, problem: `no token embedding (${clip ? 'text_model.embeddings.token_embedding.weight' : 'token_embedding.weight'})` };
  if (!pos || pos.length !== 2) return { ok: false, problem: `no position embedding (${clip ? 'text_model.embeddings.position_embedding.weight' : 'positional_embedding'})` };
  if (layers === 0) return { ok: false, problem: `no transformer layers (${layerPrefix}0.*)` };
  const [vocabSize, width] = tok as [number, number];
  const fc1 = t.get(clip ? `${layerPrefix}0.mlp.fc1.weight` : `${layerPrefix}0.mlp.c_fc.weight`)?.shape;
  if (!fc1 || fc1.length !== 2) return { ok: false, problem: `no ${layerPrefix}0 MLP weight` };
  const intermediate = fc1[0]!;
  const heads = Math.max(1, Math.floor(width / 64));
  if (width % heads !== 0) return { ok: false, problem: `width ${width} does not split into ${heads} heads` };
  const value: TextEncoderShape = {
    kind,
    width,
    layers,
    heads,
    vocabSize,
    maxPositions: pos[0]!,
    activation: clip ? 'quick_gelu' : 'gelu',
    intermediate,
  };
  return { ok: true, value, check: checkSpecs(t, textEncoderKeySpecs(value)) };
}

export function textEncoderKeySpecs(a: TextEncoderShape): KeySpec[] {
  const specs: KeySpec[] = [];
  const w = a.width;
  const add = (name: string, shape: readonly number[]): void => void specs.push({ name, shape });
  const linear = (p: string, o: number, i: number): void => {
    add(`${p}.weight`, [o, i]);
    add(`${p}.bias`, [o]);
  };
  const norm = (p: string): void => {
    add(`${p}.weight`, [w]);
    add(`${p}.bias`, [w]);
  };
  if (a.kind === 'clip') {
    add('text_model.embeddings.token_embedding.weight', [a.vocabSize, w]);
    add('text_model.embeddings.position_embedding.weight', [a.maxPositions, w]);
    for (let i = 0; i < a.layers; i++) {
      const p = `text_model.encoder.layers.${i}.`;
      for (const q of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear(`${p}self_attn.${q}`, w, w);
      norm(`${p}layer_norm1`);
      linear(`${p}mlp.fc1`, a.intermediate, w);
      linear(`${p}mlp.fc2`, w, a.intermediate);
      norm(`${p}layer_norm2`);
    }
    norm('text_model.final_layer_norm');
  } else {
    add('token_embedding.weight', [a.vocabSize, w]);
    add('positional_embedding', [a.maxPositions, w]);
    for (let i = 0; i < a.layers; i++) {
      const p = `transformer.resblocks.${i}.`;
      norm(`${p}ln_1`);
      add(`${p}attn.in_proj_weight`, [3 * w, w]);
      add(`${p}attn.in_proj_bias`, [3 * w]);
      linear(`${p}attn.out_proj`, w, w);
      norm(`${p}ln_2`);
      linear(`${p}mlp.c_fc`, a.intermediate, w);
      linear(`${p}mlp.c_proj`, w, a.intermediate);
    }
    norm('ln_final');
  }
  return specs;
}
