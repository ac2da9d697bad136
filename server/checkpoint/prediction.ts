/**
 * What the UNet predicts (`prediction: auto`), decided in this order, first match wins:
 *  1. a sidecar YAML beside the checkpoint (A1111's `<name>.yaml`, an LDM config): `parameterization: "v"` →
 *     v_prediction, `parameterization: "eps"` → epsilon;
 *  2. safetensors metadata `modelspec.prediction_type`, else `prediction_type` (`v`, `v_prediction`, `v-prediction`
 *     → v_prediction; `epsilon`, `eps` → epsilon; any other value is ignored, and said so);
 *  3. an SD-2 UNet (OpenCLIP text encoder) with 4 input channels: ComfyUI's rule (comfy/supported_models.py SD20
 *     `model_type`): population std of the last output block's first transformer block's `norm1.bias` (SD-2:
 *     `output_blocks.11.1.transformer_blocks.0.norm1.bias`) above 0.09 → v_prediction, else epsilon — a heuristic
 *     (768-v models train that norm far from its init), so the reason names the key and the value;
 *  4. otherwise epsilon (every SD-1 model, SD-2 inpainting/depth).
 */
import type { Prediction } from './architecture.js';
import type { TensorFile } from './tensor-file.js';

export interface PredictionDecision {
  readonly value: Prediction;
  readonly reason: string;
}

/** ComfyUI's threshold for the SD-2 v-prediction heuristic. */
export const V_PREDICTION_STD_THRESHOLD = 0.09;

function parsePredictionWord(raw: string): Prediction | null {
  const v = raw.trim().replace(/^["']|["']$/g, '').trim().toLowerCase();
  if (v === 'v' || v === 'v_prediction' || v === 'v-prediction' || v === 'vprediction') return 'v_prediction';
  if (v === 'eps' || v === 'epsilon') return 'epsilon';
  return null;
}

/** `parameterization:` from an LDM YAML config (model.params.parameterization), without a YAML parser: one key, one scalar. */
export function sidecarParameterization(yaml: string): { value: Prediction | null; raw: string } | null {
  const m = /^[ \t]*parameterization[ \t]*:[ \t]*([^#\r\n]*)/m.exec(yaml);
  if (!m) return null;
  const raw = m[1]!.trim();
  return { value: parsePredictionWord(raw), raw };
}

/** The key ComfyUI's rule reads, generalised to any depth: the highest-numbered output block with a transformer. */
export function vPredictionProbeKey(unetNames: Iterable<string>): string | null {
  let best = -1;
  for (const k of unetNames) {
    const m = /^output_blocks\.(\d+)\.1\.transformer_blocks\.0\.norm1\.bias$/.exec(k);
    if (m && Number(m[1]) > best) best = Number(m[1]);
  }
  return best < 0 ? null : `output_blocks.${best}.1.transformer_blocks.0.norm1.bias`;
}

export function populationStd(x: Float32Array): number {
  if (x.length === 0) return 0;
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length;
  let s = 0;
  for (const v of x) s += (v - mean) * (v - mean);
  return Math.sqrt(s / x.length);
}

export interface PredictionInputs {
  readonly file: TensorFile;
  readonly sidecarYaml: string | null;
  /** Set for an SD-2 UNet with 4 input channels: the canonical probe name and its stored tensor name. */
  readonly sd2Probe: { readonly canonical: string; readonly stored: string } | null;
  readonly isSd2: boolean;
}

export async function decidePrediction(inp: PredictionInputs): Promise<PredictionDecision> {
  if (inp.sidecarYaml != null) {
    const p = sidecarParameterization(inp.sidecarYaml);
    if (p?.value) return { value: p.value, reason: `the sidecar YAML says parameterization: ${p.raw}` };
  }
  const notes: string[] = [];
  const meta = inp.file.metadata;
  for (const key of ['modelspec.prediction_type', 'prediction_type']) {
    const raw = meta?.get(key);
    if (raw === undefined) continue;
    const v = parsePredictionWord(raw);
    if (v) return { value: v, reason: `the safetensors metadata says ${key}: ${raw}` };
    notes.push(`metadata ${key}: ${JSON.stringify(raw)} is not a prediction type FuseGraph knows, ignored`);
  }
  const tail = notes.length > 0 ? ` (${notes.join('; ')})` : '';
  if (inp.sd2Probe) {
    const data = await inp.file.readFloat32(inp.sd2Probe.stored);
    const std = populationStd(data);
    const v = std > V_PREDICTION_STD_THRESHOLD;
    return {
      value: v ? 'v_prediction' : 'epsilon',
      reason: `SD-2 heuristic (ComfyUI): std of ${inp.sd2Probe.stored} is ${std.toPrecision(4)}, ${v ? 'above' : 'not above'} ${V_PREDICTION_STD_THRESHOLD}${tail}`,
    };
  }
  if (inp.isSd2) return { value: 'epsilon', reason: `SD-2 without the v-prediction probe (not 4 input channels, or no output transformer): epsilon${tail}` };
  return { value: 'epsilon', reason: `no sidecar YAML, metadata or SD-2 heuristic says otherwise: epsilon (as every SD-1 model)${tail}` };
}
