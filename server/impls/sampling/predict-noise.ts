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

function conditioningRows(ctx: RunContext, neg: Conditioning, pos: Conditioning, batch: number, hidden: number | null): Buffers['context'] {
  for (const [field, c] of [['inputs.negative', neg], ['inputs.positive', pos]] as const) {
    if (c.shape.length !== 3 || c.shape[0] !== 1) throw ctx.error(`expected a [1, tokens, hidden] conditioning, got [${c.shape.join(', ')}]`, field);
    if (hidden !== null && c.shape[2] !== hidden) {
      throw ctx.error(`conditioning width ${c.shape[2]} does not match the UNet's encoder_hidden_states width ${hidden}`, field);
    }
  }
  if (neg.shape[1] !== pos.shape[1] || neg.shape[2] !== pos.shape[2]) {
    throw ctx.error(`positive [${pos.shape.join(', ')}] and negative [${neg.shape.join(', ')}] conditionings differ in shape`, 'inputs.negative');
  }
  // Unconditional rows first, as diffusers and CompVis batch them.
  const per = pos.data.length;
  const context = new Float32Array(2 * batch * per);
  for (let i = 0; i < batch; i++) {
    context.set(neg.data, i * per);
    context.set(pos.data, (batch + i) * per);
  }
  return context;
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
      const context = conditioningRows(ctx, negative, positive, batch, model.info.hiddenSize);
      buf = { sample: new Float32Array(2 * size), eps: new Float32Array(size), context, contextShape: [2 * batch, positive.shape[1]!, positive.shape[2]!] };
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
