/**
 * A prompt in ComfyUI's syntax (prompt-syntax.ts) → the UNet's conditioning [1, 77·chunks, width], as ComfyUI's
 * default CLIP text encode does it (comfy/sd1_clip.py ClipTokenWeightEncoder.encode_token_weights):
 *
 * - each 77-token chunk is encoded on its own, and the chunks are concatenated along the sequence;
 * - token weights: ComfyUI's default weight interpretation ("comfy", the one with no mean restoration, as opposed to
 *   A1111's, which rescales to keep the mean): when any token of the prompt has a weight w ≠ 1, the empty prompt
 *   [BOS, EOS, pad…] is encoded too (z_empty), and each token j of weight w ≠ 1 becomes
 *   z_empty[j] + w · (z[j] − z_empty[j]), in float32 as torch computes it; tokens of weight 1 are left exactly as
 *   encoded, so a prompt without weights encodes exactly as its plain token ids do;
 * - CLIP skip 2 (ComfyUI's CLIPSetLastLayer −2) takes the penultimate layer's output with the final layer norm
 *   applied (the `hidden_states_penultimate` output FuseGraph's text encoders have). SD-2's OpenCLIP encoder already
 *   conditions on the penultimate layer by default, and ComfyUI's −2 on SD-2 is that same default: clip_skip 2 on
 *   SD-2 equals clip_skip 1;
 * - textual-inversion embeddings (embeddings.ts) go in place of their word, fed as the text encoder's
 *   `extra_embeddings` input (id −1−k is row k).
 */
import type { SdModel, Tensor32 } from './sd-model.js';
import type { Embedding } from './embeddings.js';
import { EmbeddingError, readEmbedding } from './embeddings.js';
import type { PromptToken, TokenizedPrompt, WordTokenizer } from './prompt-syntax.js';
import { embeddingNames, tokenizePrompt } from './prompt-syntax.js';

/** An OpenCLIP ViT-H (SD-2) text encoder's width: its default output already is the penultimate layer. */
const OPEN_CLIP_H_WIDTH = 1024;

export class PromptError extends Error {
  constructor(
    message: string,
    /** The EncodePrompt field at fault. */
    readonly field: 'params.text' | 'params.clip_skip' | 'inputs.model',
  ) {
    super(message);
    this.name = 'PromptError';
  }
}

/**
 * The names an embedding lookup must know for `text`: each `embedding:NAME`, and NAME with its commas stripped
 * (prompt-syntax.ts falls back to it as ComfyUI does).
 */
export function embeddingCandidates(text: string): string[] {
  const out = new Set<string>();
  for (const name of embeddingNames(text)) {
    out.add(name);
    const stripped = name.replace(/^,+|,+$/g, '');
    if (stripped !== '') out.add(stripped);
  }
  return [...out];
}

/** Reads the embeddings `text` names that exist (a missing one is not an error here: the tokenizer reports it). */
export async function loadPromptEmbeddings(text: string, modelsRoot: string, width: number | null): Promise<Map<string, Embedding>> {
  const found = new Map<string, Embedding>();
  for (const name of embeddingCandidates(text)) {
    try {
      found.set(name, await readEmbedding(modelsRoot, name, width));
    } catch (err) {
      if (err instanceof EmbeddingError && /not found/.test(err.message)) continue;
      throw new PromptError((err as Error).message, 'params.text');
    }
  }
  return found;
}

/** Tokenizes with the embeddings loaded for it. */
export function tokenizeWithEmbeddings(text: string, tokenizer: WordTokenizer, embeddings: ReadonlyMap<string, { readonly vectors: number }>): TokenizedPrompt {
  return tokenizePrompt(text, tokenizer, (name) => embeddings.get(name)?.vectors ?? null);
}

/** Which text encoder output clip_skip selects for this model, or why it cannot. */
export function clipSkipLayer(model: Pick<SdModel, 'textEncoderFeatures' | 'info'>, clipSkip: number): 'last' | 'penultimate' {
  if (clipSkip === 1) return 'last';
  if (clipSkip !== 2) throw new PromptError(`clip_skip ${clipSkip}: only 1 (last layer) and 2 (penultimate) are supported`, 'params.clip_skip');
  if (model.textEncoderFeatures.penultimate) return 'penultimate';
  // An exported SD-2 folder (diffusers' 23-layer CLIPTextModel) already outputs OpenCLIP's penultimate layer.
  if (model.info.hiddenSize === OPEN_CLIP_H_WIDTH) return 'last';
  throw new PromptError(
    'clip_skip 2 needs the text encoder\'s penultimate layer, and this model\'s text_encoder/model.onnx has no ' +
      '"hidden_states_penultimate" output (FuseGraph\'s checkpoint builds and `fusegraph convert` folders have it); use clip_skip 1',
    'params.clip_skip',
  );
}

/** z_empty + w·(z − z_empty) per token of weight w ≠ 1, in float32 (torch: (z − z_empty) · w + z_empty), in place. */
export function applyTokenWeights(z: Float32Array, empty: Float32Array, weights: readonly number[], width: number): void {
  for (let j = 0; j < weights.length; j++) {
    const w = Math.fround(weights[j]!);
    if (weights[j] === 1.0) continue;
    for (let k = j * width; k < (j + 1) * width; k++) z[k] = Math.fround(Math.fround(Math.fround(z[k]! - empty[k]!) * w) + empty[k]!);
  }
}

/** A chunk's ids for the text encoder: vocabulary ids as they are, embedding vector k of the extra rows as −1−k. */
function chunkIds(chunk: readonly PromptToken[], offsets: ReadonlyMap<string, number>): number[] {
  return chunk.map((t) => ('id' in t ? t.id : -1 - (offsets.get(t.embedding)! + t.vector)));
}

export interface EncodedPrompt {
  readonly cond: Tensor32;
  readonly tokenized: TokenizedPrompt;
}

/**
 * Encodes a tokenized prompt (see the module comment). `embeddings` must hold every embedding the tokenization used;
 * a missing one, a bad weight or an unusable text encoder throws a PromptError naming the field.
 */
export async function encodeTokenizedPrompt(
  model: Pick<SdModel, 'encodeText' | 'textEncoderFeatures' | 'info' | 'tokenizer'>,
  tokenized: TokenizedPrompt,
  embeddings: ReadonlyMap<string, Embedding>,
  clipSkip: number,
): Promise<Tensor32> {
  if (tokenized.missing.length > 0) {
    throw new PromptError(`embedding${tokenized.missing.length > 1 ? 's' : ''} not found in embeddings/: ${tokenized.missing.join(', ')}`, 'params.text');
  }
  if (tokenized.badWeights.length > 0) throw new PromptError(`prompt weight ${tokenized.badWeights[0]} is not a finite number`, 'params.text');
  const layer = clipSkipLayer(model, clipSkip);

  let extra: Tensor32 | undefined;
  const offsets = new Map<string, number>();
  if (tokenized.embeddings.size > 0) {
    if (!model.textEncoderFeatures.extraEmbeddings) {
      throw new PromptError(
        'textual-inversion embeddings need a text encoder with an "extra_embeddings" input (FuseGraph builds one from ' +
          'checkpoints; an exported ONNX folder has none, and a cached build from before it needs clearing: fusegraph cache clear)',
        'params.text',
      );
    }
    const used = [...tokenized.embeddings.keys()].map((name) => embeddings.get(name)!);
    const width = used[0]!.width;
    for (const e of used) {
      const expect = model.info.hiddenSize ?? width;
      if (e.width !== expect) throw new PromptError(`embedding "${e.name}" has vectors of width ${e.width}, but this model's text encoder has width ${expect}`, 'params.text');
    }
    const data = new Float32Array(used.reduce((n, e) => n + e.data.length, 0));
    let rows = 0;
    for (const e of used) {
      offsets.set(e.name, rows);
      data.set(e.data, rows * width);
      rows += e.vectors;
    }
    extra = { data, shape: [rows, width] };
  }

  const opts = { layer, ...(extra ? { extraEmbeddings: extra } : {}) };
  const encoded: Tensor32[] = [];
  for (const chunk of tokenized.chunks) encoded.push(await model.encodeText([chunkIds(chunk, offsets)], opts));
  const [, seq, width] = encoded[0]!.shape as [number, number, number];

  if (tokenized.chunks.some((c) => c.some((t) => t.weight !== 1.0))) {
    const t = model.tokenizer;
    const emptyIds = [t.bosTokenId, t.eosTokenId, ...new Array<number>(seq - 2).fill(t.padTokenId)];
    const empty = (await model.encodeText([emptyIds], opts)).data;
    tokenized.chunks.forEach((c, i) => applyTokenWeights(encoded[i]!.data, empty, c.map((tok) => tok.weight), width));
  }
  if (encoded.length === 1) return encoded[0]!;
  const data = new Float32Array(encoded.length * seq * width);
  encoded.forEach((e, i) => data.set(e.data, i * seq * width));
  return { data, shape: [1, encoded.length * seq, width] };
}

/** Tokenizes, loads the embeddings from `modelsRoot`/embeddings and encodes. */
export async function encodePrompt(model: SdModel, text: string, opts: { readonly clipSkip: number; readonly modelsRoot: string }): Promise<EncodedPrompt> {
  const embeddings = await loadPromptEmbeddings(text, opts.modelsRoot, model.info.hiddenSize);
  const tokenized = tokenizeWithEmbeddings(text, model.tokenizer, embeddings);
  return { cond: await encodeTokenizedPrompt(model, tokenized, embeddings, opts.clipSkip), tokenized };
}
