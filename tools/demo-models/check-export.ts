// Checks an exported demo model folder through the engine's own loading path (inspectModelFolder + SdModel on
// onnxruntime-node, CPU): the tokenizer gives the ids the Python training used, and the text encoder and UNet give
// the outputs PyTorch computed at export time (tools/demo-models/train.py writes <out>/<name>-export-check.json).
//
//   node --import tsx tools/demo-models/check-export.ts models/demo/general models/demo/cartoon

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { inspectModelFolder } from '../../server/sd/model-folder.js';
import { SdModel } from '../../server/sd/sd-model.js';

interface ExportCheck {
  /** Unpadded ids (BOS ... EOS) of each prompt. */
  prompts: Record<string, number[]>;
  max_length: number;
  pad_id: number;
  text_encoder: { prompt: string; sum: number; abs_sum: number; head: number[]; pooled_head: number[] };
  unet: { res: number; timestep: number; sum: number; abs_sum: number; stride: number; values: number[] };
}

export interface CheckResult {
  folder: string;
  tokenizerMismatches: string[];
  textEncoderMaxDiff: number;
  unetMaxDiff: number;
  unetSum: { expected: number; actual: number };
  latentChannels: number;
  vaeFactor: number;
  scalingFactor: number;
  hiddenSize: number | null;
  ok: boolean;
}

/** Relative tolerance of ONNX Runtime vs PyTorch on CPU, both float32 math over the same float16 weights. */
const TOLERANCE = 2e-3;

/** The UNet input train.py's check_inputs() builds: sample[i] = sin(0.37 i), shape [1,3,res,res]. */
function checkSample(res: number): Float32Array {
  const n = 3 * res * res;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sin(0.37 * i);
  return out;
}

function maxAbsDiff(actual: ArrayLike<number>, expected: readonly number[]): number {
  let m = 0;
  for (let i = 0; i < expected.length; i++) m = Math.max(m, Math.abs((actual[i] ?? NaN) - expected[i]!));
  return Number.isNaN(m) ? Infinity : m;
}

function scaleOf(values: readonly number[]): number {
  return Math.max(1, ...values.map(Math.abs));
}

export function defaultCheckFile(folder: string): string {
  return path.join(path.dirname(path.resolve(folder)), `${path.basename(folder)}-export-check.json`);
}

export async function checkExport(folder: string, checkFile = defaultCheckFile(folder)): Promise<CheckResult> {
  const check = JSON.parse(await readFile(checkFile, 'utf8')) as ExportCheck;
  const model = await SdModel.load(folder, await inspectModelFolder(path.resolve(folder)), ['cpu'], 1);
  try {
    const tokenizerMismatches: string[] = [];
    const padded = (ids: readonly number[]): number[] => [...ids, ...new Array<number>(check.max_length - ids.length).fill(check.pad_id)];
    for (const [prompt, ids] of Object.entries(check.prompts)) {
      const got = model.tokenizer.encodePadded(prompt);
      if (JSON.stringify(got) !== JSON.stringify(padded(ids))) tokenizerMismatches.push(prompt);
    }
    const ids = padded(check.prompts[check.text_encoder.prompt]!);
    const hidden = await model.encodeText([ids]);
    const te = check.text_encoder;
    const teDiff = Math.max(
      maxAbsDiff(hidden.data.subarray(0, te.head.length), te.head) / scaleOf(te.head),
      Math.abs(hidden.data.reduce((s, v) => s + v, 0) - te.sum) / Math.max(1, te.abs_sum),
    );
    const side = check.unet.res;
    const sample = { data: checkSample(side), shape: [1, 3, side, side] };
    const out = await model.predict(sample, check.unet.timestep, hidden);
    const strided = check.unet.values.map((_, i) => out[i * check.unet.stride]!);
    const sum = out.reduce((s, v) => s + v, 0);
    const unetDiff = Math.max(
      maxAbsDiff(strided, check.unet.values) / scaleOf(check.unet.values),
      Math.abs(sum - check.unet.sum) / Math.max(1, check.unet.abs_sum),
    );
    const { latentChannels, vaeFactor, scalingFactor, hiddenSize } = model.info;
    return {
      folder,
      tokenizerMismatches,
      textEncoderMaxDiff: teDiff,
      unetMaxDiff: unetDiff,
      unetSum: { expected: check.unet.sum, actual: sum },
      latentChannels,
      vaeFactor,
      scalingFactor,
      hiddenSize,
      ok:
        tokenizerMismatches.length === 0 &&
        teDiff <= TOLERANCE &&
        unetDiff <= TOLERANCE &&
        latentChannels === 3 &&
        vaeFactor === 1 &&
        scalingFactor === 1,
    };
  } finally {
    await model.dispose();
  }
}

async function main(folders: readonly string[]): Promise<number> {
  if (folders.length === 0) {
    console.error('usage: node --import tsx tools/demo-models/check-export.ts MODEL_FOLDER...');
    return 2;
  }
  let failed = 0;
  for (const folder of folders) {
    const r = await checkExport(folder);
    console.log(JSON.stringify(r));
    if (!r.ok) failed++;
  }
  return failed === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
