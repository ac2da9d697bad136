/**
 * buildTextEncoderGraph against the committed PyTorch reference (tools/checkpoint-reference/make_fixtures.py):
 * the graphs are built from the tiny checkpoints' own tensors and run in ONNX Runtime's CPU provider.
 *
 * Tolerances were measured (max abs error / relative L2 against the reference, outputs of magnitude ~1):
 * float32 graphs ≤ 3e-6 / 5e-7 → asserted at 1e-4 / 1e-5; float16 graphs ≤ 2.2e-3 / 5.1e-4 → asserted at 1e-2 / 2e-3
 * (each test reports its measured error as a diagnostic).
 */
import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as ort from 'onnxruntime-node';

import type { TextEncoderArchitecture } from '../../server/checkpoint/architecture.js';
import { buildTextEncoderGraph } from '../../server/checkpoint/build/text-encoder-graph.js';
import { openTensorFile } from '../../server/checkpoint/formats/open-tensor-file.js';
import { CheckpointError, type TensorFile } from '../../server/checkpoint/tensor-file.js';
import { prefixedWeights, type GraphPrecision, type Weights } from '../../server/checkpoint/weights.js';
import { decodeNpy } from '../../server/sd/npy.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/checkpoints');
const REFERENCE = path.join(FIXTURES, 'reference');

interface ManifestCase {
  name: string;
  checkpoint: string;
  inputs: { input_ids?: number[][] };
  outputs: Record<string, { file: string; shape: number[] }>;
}

const SD1: TextEncoderArchitecture = { kind: 'clip', width: 64, layers: 2, heads: 1, vocabSize: 49408, maxPositions: 77, activation: 'quick_gelu' };
const MULTIHEAD: TextEncoderArchitecture = { kind: 'clip', width: 128, layers: 2, heads: 2, vocabSize: 1000, maxPositions: 77, activation: 'quick_gelu' };
const SD2: TextEncoderArchitecture = { kind: 'open-clip', width: 64, layers: 3, heads: 1, vocabSize: 49408, maxPositions: 77, activation: 'gelu' };

const TOL = {
  float32: { maxAbs: 1e-4, relL2: 1e-5 },
  float16: { maxAbs: 1e-2, relL2: 2e-3 },
} as const;

let tmp: string;
let cases: ManifestCase[];
const files: TensorFile[] = [];

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-text-encoder-'));
  cases = (JSON.parse(await readFile(path.join(REFERENCE, 'manifest.json'), 'utf8')) as { cases: ManifestCase[] }).cases;
});

after(async () => {
  for (const f of files) await f.close();
  await rm(tmp, { recursive: true, force: true });
});

function manifestCase(name: string): ManifestCase {
  const c = cases.find((x) => x.name === name);
  assert.ok(c, `manifest has case ${name}`);
  return c;
}

async function open(checkpoint: string, prefix: string): Promise<Weights> {
  const f = await openTensorFile(path.join(FIXTURES, checkpoint));
  files.push(f);
  return prefixedWeights(f, prefix);
}

async function reference(file: string): Promise<Float32Array> {
  return decodeNpy(await readFile(path.join(REFERENCE, file)), file).data;
}

let built = 0;
async function build(weights: Weights, arch: TextEncoderArchitecture, precision: GraphPrecision): Promise<ort.InferenceSession> {
  const dir = path.join(tmp, `te-${built++}`);
  await buildTextEncoderGraph(weights, arch, dir, { precision });
  return ort.InferenceSession.create(path.join(dir, 'model.onnx'));
}

async function encode(session: ort.InferenceSession, ids: number[][]): Promise<Record<string, Float32Array>> {
  const flat = Int32Array.from(ids.flat());
  const result = await session.run({ input_ids: new ort.Tensor('int32', flat, [ids.length, ids[0]!.length]) });
  const out: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(result)) {
    assert.equal(t.type, 'float32', `${name} is float32`);
    out[name] = t.data as Float32Array;
  }
  return out;
}

function errors(actual: Float32Array, expected: Float32Array): { maxAbs: number; relL2: number } {
  assert.equal(actual.length, expected.length);
  let maxAbs = 0;
  let num = 0;
  let den = 0;
  for (let i = 0; i < actual.length; i++) {
    const d = actual[i]! - expected[i]!;
    assert.ok(Number.isFinite(actual[i]!), `finite output at ${i}`);
    maxAbs = Math.max(maxAbs, Math.abs(d));
    num += d * d;
    den += expected[i]! * expected[i]!;
  }
  return { maxAbs, relL2: Math.sqrt(num / den) };
}

/** Asserts the tolerance and reports the measured error as a test diagnostic. */
function assertClose(
  actual: Float32Array,
  expected: Float32Array,
  tol: { maxAbs: number; relL2: number },
  what: string,
  t?: TestContext,
): void {
  const e = errors(actual, expected);
  t?.diagnostic(`${what}: max abs ${e.maxAbs.toExponential(2)}, rel L2 ${e.relL2.toExponential(2)}`);
  assert.ok(e.maxAbs <= tol.maxAbs && e.relL2 <= tol.relL2, `${what}: max abs ${e.maxAbs.toExponential(2)}, rel L2 ${e.relL2.toExponential(2)}`);
}

describe('CLIP text encoder (SD-1) against the PyTorch reference', () => {
  for (const [caseName, checkpoint, arch] of [
    ['sd1-text', 'tiny-sd1.ckpt', SD1],
    ['sd1-fp16-text', 'tiny-sd1-fp16.safetensors', SD1],
    ['clip-multihead-text', 'tiny-clip-multihead.safetensors', MULTIHEAD],
  ] as const) {
    for (const precision of ['float32', 'float16'] as const) {
      test(`${caseName} (${checkpoint}), ${precision} graph: last layer and clip skip 2`, async (t) => {
        const c = manifestCase(caseName);
        const session = await build(await open(checkpoint, 'cond_stage_model.transformer.'), arch, precision);
        assert.deepEqual(session.inputNames, ['input_ids']);
        assert.deepEqual([...session.outputNames].sort(), ['hidden_states_penultimate', 'last_hidden_state']);
        const out = await encode(session, c.inputs.input_ids!);
        assertClose(out.last_hidden_state!, await reference(c.outputs.last_hidden_state!.file), TOL[precision], 'last_hidden_state', t);
        assertClose(out.hidden_states_penultimate!, await reference(c.outputs.clip_skip_2!.file), TOL[precision], 'clip skip 2', t);
      });
    }
  }

  test('the causal mask is built for any sequence length: a prefix encodes as in the full 77-token chunk', async () => {
    const c = manifestCase('clip-multihead-text');
    const session = await build(await open('tiny-clip-multihead.safetensors', 'cond_stage_model.transformer.'), MULTIHEAD, 'float32');
    const ids = c.inputs.input_ids!;
    const full = await encode(session, ids);
    const short = 9;
    const prefix = await encode(session, ids.map((row) => row.slice(0, short)));
    const W = MULTIHEAD.width;
    for (let b = 0; b < ids.length; b++) {
      const want = full.last_hidden_state!.subarray(b * 77 * W, (b * 77 + short) * W);
      const got = prefix.last_hidden_state!.subarray(b * short * W, (b + 1) * short * W);
      assertClose(got, want, TOL.float32, `batch ${b} prefix`);
    }
    // And the later tokens do see the earlier ones: changing token 1 changes position 5's output.
    const changed = await encode(session, [ids[0]!.map((t, i) => (i === 1 ? (t + 1) % MULTIHEAD.vocabSize : t))]);
    assert.ok(errors(changed.last_hidden_state!.subarray(5 * W, 6 * W), full.last_hidden_state!.subarray(5 * W, 6 * W)).maxAbs > 1e-3);
    assertClose(changed.last_hidden_state!.subarray(0, W), full.last_hidden_state!.subarray(0, W), TOL.float32, 'position 0 unaffected');
  });

  test('a checkpoint that does not match the architecture fails at build time with a message', async () => {
    const weights = await open('tiny-sd1-fp16.safetensors', 'cond_stage_model.transformer.');
    await assert.rejects(build(weights, { ...SD1, width: 128 }, 'float32'), (e: unknown) => e instanceof CheckpointError && /token_embedding/.test(e.message));
    await assert.rejects(build(weights, { ...SD1, layers: 3 }, 'float32'), CheckpointError);
  });
});

describe('OpenCLIP text encoder (SD-2) against the PyTorch reference', () => {
  for (const precision of ['float32', 'float16'] as const) {
    test(`sd2-text, ${precision} graph: both outputs are ln_final(resblocks[-2]), what SD-2 conditions on`, async (t) => {
      const c = manifestCase('sd2-text');
      const session = await build(await open('tiny-sd2.safetensors', 'cond_stage_model.model.'), SD2, precision);
      const out = await encode(session, c.inputs.input_ids!);
      const penultimate = await reference(c.outputs.penultimate!.file);
      assertClose(out.last_hidden_state!, penultimate, TOL[precision], 'last_hidden_state', t);
      assertClose(out.hidden_states_penultimate!, penultimate, TOL[precision], 'hidden_states_penultimate', t);
      // The default is not the full stack's output.
      assert.ok(errors(out.last_hidden_state!, await reference(c.outputs.last!.file)).relL2 > 1e-2);
    });
  }

  test('sd2-text: every resblock is emitted right (one more declared layer runs all three stored ones)', async (t) => {
    // The graph never runs the last declared layer; declaring 4 makes it run the file's 3 and match `last`.
    const c = manifestCase('sd2-text');
    const session = await build(await open('tiny-sd2.safetensors', 'cond_stage_model.model.'), { ...SD2, layers: 4 }, 'float32');
    const out = await encode(session, c.inputs.input_ids!);
    assertClose(out.last_hidden_state!, await reference(c.outputs.last!.file), TOL.float32, 'ln_final(resblocks[-1])', t);
  });
});
