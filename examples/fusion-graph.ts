import { graph, type Graph } from 'fusegraph/client';

export interface FusionOptions {
  readonly prompt?: string;
  readonly seed?: number;
  readonly steps?: number;
  /** SNB while t > switchT, then the general model alone. */
  readonly switchT?: number;
  /** Also render each model alone (the demo graph's comparison outputs). Default true. */
  readonly compare?: boolean;
  readonly version?: 1 | 2;
}

/**
 * The demo fusion (graphs/demo-fusion.json) with the graph builder: the two demo models, SNB while t > switchT,
 * then the general model. With the defaults and `version: 1` it is exactly the bundled file (a test checks).
 */
export function fusionGraph(o: FusionOptions = {}): Graph {
  const prompt = o.prompt ?? 'a red star on the left';
  const steps = o.steps ?? 50;
  const g = graph({
    name: 'Demo: a red star, fused from two models',
    description:
      "The editor's first graph, on the two demo models that ship in models/demo/ (tools/demo-models/README.md): a 'photo' general model that has never seen a star and a flat 'cartoon' expert that draws everything large and centred. \"a red star on the left\": the general model alone draws a shaded blob on the left, the cartoon model alone a flat outlined star; the fused sampler blends the two models' noise by saliency (SNB) while t > 20 and lets the general model finish, giving a star with the general model's shading and textured background. Outputs: general alone, expert alone, fused.",
  });
  const at = (x: number, y: number) => ({ ui: { x, y } });
  const base = g.add('LoadModel', { path: 'demo/general' }, {}, { id: 'base_model', ...at(0, 0) });
  const other = g.add('LoadModel', { path: 'demo/cartoon' }, {}, { id: 'other_model', ...at(0, 420) });
  const basePrompt = g.add('EncodePrompt', { text: prompt }, { model: base.out.model }, { id: 'base_prompt', ...at(300, 0) });
  const otherPrompt = g.add('EncodePrompt', { text: prompt }, { model: base.out.model }, { id: 'other_prompt', ...at(300, 200) });
  const uncond = g.add('EncodePrompt', { text: '' }, { model: base.out.model }, { id: 'uncond', ...at(300, 400) });
  const noise = g.add('NoiseLatent', { seed: o.seed ?? 0, width: 32, height: 32, batch: 1 }, { model: base.out.model }, { id: 'noise', ...at(300, 1000) });
  const epsBase = g.add('PredictNoise', { guidance_scale: 10 }, {
    model: base.out.model, positive: basePrompt.out.cond, negative: uncond.out.cond,
  }, { id: 'eps_base', ...at(640, 0) });
  const epsOther = g.add('PredictNoise', { guidance_scale: 10 }, {
    model: other.out.model, positive: otherPrompt.out.cond, negative: uncond.out.cond,
  }, { id: 'eps_other', ...at(640, 220) });
  const salBase = g.add('SaliencyMask', { k: 1 }, { noise: epsBase.out.noise }, { id: 'saliency_base', ...at(980, 0) });
  // The expert's unconditional comes from the base model's prediction, as in the original code (quirk Q1).
  const salOther = g.add('SaliencyMask', { k: 1 }, { noise: epsOther.out.noise, uncond_from: epsBase.out.noise }, { id: 'saliency_other', ...at(980, 200) });
  const snb = g.add('BlendNoise', { mode: 'argmax' }, {
    a: epsBase.out.noise, b: epsOther.out.noise, saliency_a: salBase.out.saliency, saliency_b: salOther.out.saliency,
  }, { id: 'snb', ...at(1320, 60) });
  const schedule = g.add('SwitchAtTimestep', { t: o.switchT ?? 20 }, { before: snb.out.noise, after: epsBase.out.noise }, { id: 'schedule', ...at(1660, 60) });
  const fused = g.add('DDIMStep', { steps, eta: 0 }, { model: base.out.model, noise: schedule.out.noise, latent: noise.out.latent }, { id: 'sample_fused', ...at(2020, 0) });
  const save = (id: string, prefix: string, latent: typeof fused.out.latent, model: typeof base.out.model, y: number) => {
    const decoded = g.add('Decode', undefined, { model, latent }, { id: `decode_${id}`, ...at(2360, y) });
    g.add('SaveImage', { prefix }, { image: decoded.out.image }, { id: `save_${id}`, ...at(2700, y) });
  };
  if (o.compare ?? true) {
    const ownPrompt = g.add('EncodePrompt', { text: prompt }, { model: other.out.model }, { id: 'other_own_prompt', ...at(300, 600) });
    const ownUncond = g.add('EncodePrompt', { text: '' }, { model: other.out.model }, { id: 'other_own_uncond', ...at(300, 800) });
    const epsAlone = g.add('PredictNoise', { guidance_scale: 10 }, {
      model: other.out.model, positive: ownPrompt.out.cond, negative: ownUncond.out.cond,
    }, { id: 'eps_other_alone', ...at(640, 700) });
    const sampleBase = g.add('DDIMStep', { steps, eta: 0 }, { model: base.out.model, noise: epsBase.out.noise, latent: noise.out.latent }, { id: 'sample_base', ...at(2020, 440) });
    const sampleOther = g.add('DDIMStep', { steps, eta: 0 }, { model: other.out.model, noise: epsAlone.out.noise, latent: noise.out.latent }, { id: 'sample_other', ...at(2020, 860) });
    save('general', 'general', sampleBase.out.latent, base.out.model, 440);
    save('expert', 'expert', sampleOther.out.latent, other.out.model, 860);
  }
  save('fused', 'fused', fused.out.latent, base.out.model, 0);
  return g.build({ version: o.version ?? 2 });
}
