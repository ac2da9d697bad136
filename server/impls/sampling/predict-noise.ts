import { PredictNoise } from '../../../nodes/index.js';
import { applyGuidance } from '../../sampler/guidance.js';
import { toEpsilon } from '../../sampler/prediction.js';
import type { Conditioning, NoiseValue, RunContext } from '../types.js';
import { implement } from '../types.js';

/**
 * Per-node buffers, built on the first step and reused by every later one of the run. `eps` is overwritten at every
 * step: consumers use a step's noise within that step (DDIMStep, BlendNoise, SaliencyMask) and keep no reference.
 */
interface Buffers {
  readonly sample: Float32Array;
  readonly eps: Float32Array;
  readonly context: Float32Array;
  readonly contextShape: readonly number[];
}

const buffers = new WeakMap<RunContext, Buffers>();

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * The UNet's context rows [2·batch, tokens, hidden]: the negative conditioning's rows, then the positive's. Prompts
 * over 77 tokens encode to several 77-token chunks (EncodePrompt), so the two may differ in length: as ComfyUI
 * batches conds of different lengths (comfy/conds.py CONDCrossAttn.concat), each is repeated along the sequence to
 * the least common multiple of the two lengths. Cross-attention over a sequence repeated k times equals attention
 * over it once (each key's softmax weight is split evenly among its k copies), so the result is that of separate
 * calls. (ComfyUI gives up batching past 4× padding and makes two calls instead; FuseGraph always batches.)
 * `fixedTokens` is the sequence length a UNet export fixed (null when dynamic).
 */
function conditioningRows(
  ctx: RunContext, neg: Conditioning, pos: Conditioning, batch: number, hidden: number | null, fixedTokens: number | null,
): { context: Float32Array; tokens: number } {
  for (const [field, c] of [['inputs.negative', neg], ['inputs.positive', pos]] as const) {
    if (c.shape.length !== 3 || c.shape[0] !== 1) throw ctx.error(`expected a [1, tokens, hidden] conditioning, got [${c.shape.join(', ')}]`, field);
    if (hidden !== null && c.shape[2] !== hidden) {
      throw ctx.error(`conditioning width ${c.shape[2]} does not match the UNet's encoder_hidden_states width ${hidden}`, field);
    }
  }
  if (neg.shape[2] !== pos.shape[2]) {
    throw ctx.error(`positive [${pos.shape.join(', ')}] and negative [${neg.shape.join(', ')}] conditionings differ in width`, 'inputs.negative');
  }
  const [negTokens, posTokens, width] = [neg.shape[1]!, pos.shape[1]!, pos.shape[2]!];
  const tokens = (negTokens / gcd(negTokens, posTokens)) * posTokens;
  if (fixedTokens !== null && tokens !== fixedTokens) {
    const field = posTokens !== fixedTokens ? 'inputs.positive' : 'inputs.negative';
    throw ctx.error(
      `this UNet's encoder_hidden_states has a fixed sequence of ${fixedTokens} tokens, but the prompts need ${tokens} ` +
        `(a prompt over 75 tokens encodes to several 77-token chunks): shorten the prompt, or use a UNet exported with a dynamic sequence axis`,
      field,
    );
  }
  // Unconditional rows first, as diffusers and CompVis batch them; each row its conditioning repeated to `tokens`.
  const per = tokens * width;
  const context = new Float32Array(2 * batch * per);
  for (let i = 0; i < batch; i++) {
    for (let at = 0; at < per; at += neg.data.length) context.set(neg.data, i * per + at);
    for (let at = 0; at < per; at += pos.data.length) context.set(pos.data, (batch + i) * per + at);
  }
  return { context, tokens };
}

export const predictNoise = implement(PredictNoise, {
  kind: 'per-step',
  async admit(_params, facts) {
    const m = facts.model('model');
    if (m) facts.usesUnet(m);
  },
  async evaluate(step, inputs, params, ctx): Promise<NoiseValue> {
    const { model, positive, negative } = inputs;
    const [batch, channels, h, w] = step.x.shape as [number, number, number, number];
    if (channels !== model.info.latentChannels) {
      throw ctx.error(`latent has ${channels} channels but the model expects ${model.info.latentChannels}`, 'inputs.model');
    }
    const size = step.x.data.length;
    let buf = buffers.get(ctx);
    if (!buf || buf.sample.length !== 2 * size) {
      const ehs = model.info.parts.unet.inputs.find((i) => i.name === 'encoder_hidden_states')?.shape[1];
      const fixed = typeof ehs === 'number' && ehs > 0 ? ehs : null;
      const { context, tokens } = conditioningRows(ctx, negative, positive, batch, model.info.hiddenSize, fixed);
      buf = { sample: new Float32Array(2 * size), eps: new Float32Array(size), context, contextShape: [2 * batch, tokens, positive.shape[2]!] };
      buffers.set(ctx, buf);
    }
    buf.sample.set(step.x.data, 0);
    buf.sample.set(step.x.data, size);
    const out = await model.predict({ data: buf.sample, shape: [2 * batch, channels, h, w] }, step.t, { data: buf.context, shape: buf.contextShape }, ctx.signal);
    if (out.length !== 2 * size) throw ctx.error(`UNet returned ${out.length} values, expected ${2 * size}`, 'inputs.model');
    toEpsilon(out, step.x.data, step.alphaCumprod, model.prediction);
    const uncond = out.subarray(0, size);
    const cond = out.subarray(size);
    applyGuidance(buf.eps, uncond, cond, params.guidance_scale);
    return { eps: buf.eps, shape: step.x.shape, parts: { uncond, cond, scale: params.guidance_scale, node: ctx.node } };
  },
});
