/**
 * buildVaeDecoderGraph / buildVaeEncoderGraph against the committed PyTorch reference
 * (tools/checkpoint-reference/make_fixtures.py), built from the tiny checkpoints' own tensors and run in ONNX
 * Runtime's CPU provider.
 *
 * Tolerances were measured (max abs error / relative L2 against the reference; outputs of magnitude ~1):
 * float32 graphs ≤ 3e-6 / 1.1e-6 → asserted at 1e-4 / 1e-5; float16 graphs ≤ 1.6e-3 / 7.4e-4 → asserted at
 * 1e-2 / 3e-3 (each test reports its measured error as a diagnostic).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as ort from 'onnxruntime-node';

import type { VaeArchitecture } from '../../server/checkpoint/architecture.js';
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from '../../server/checkpoint/build/vae-graph.js';
import { openTensorFile } from '../../server/checkpoint/formats/open-tensor-file.js';
import { CheckpointError, type TensorFile } from '../../server/checkpoint/tensor-file.js';
import { prefixedWeights, type GraphPrecision, type Weights } from '../../server/checkpoint/weights.js';
import { decodeNpy } from '../../server/sd/npy.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/checkpoints');
const REFERENCE = path.join(FIXTURES, 'reference');

interface NpyRef {
  file: string;
  shape: number[];
}
interface ManifestCase {
  name: string;
  checkpoint: string;
  inputs: Record<string, NpyRef>;
  outputs: Record<string, NpyRef>;
}

/** All tiny fixtures share this VAE shape (manifest: ch 32, ch_mult [1, 2], num_res_blocks 1, z 4). */
const TINY: VaeArchitecture = { ch: 32, chMult: [1, 2], numResBlocks: 1, zChannels: 4, outChannels: 3, scalingFactor: 0.18215, hasEncoder: true };

const TOL = {
  float32: { maxAbs: 1e-4, relL2: 1e-5 },
  float16: { maxAbs: 1e-2, relL2: 3e-3 },
} as const;

let tmp: string;
let cases: ManifestCase[];
const files: TensorFile[] = [];

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-vae-graph-'));
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

async function npy(ref: NpyRef): Promise<{ data: Float32Array; shape: number[] }> {
  const r = decodeNpy(await readFile(path.join(REFERENCE, ref.file)), ref.file);
  assert.deepEqual(r.shape, ref.shape);
  return r;
}

let built = 0;
async function build(
  kind: 'decoder' | 'encoder',
  weights: Weights,
  arch: VaeArchitecture,
  precision: GraphPrecision,
): Promise<ort.InferenceSession> {
  const dir = path.join(tmp, `vae-${kind}-${built++}`);
  await (kind === 'decoder' ? buildVaeDecoderGraph : buildVaeEncoderGraph)(weights, arch, dir, { precision });
  return ort.InferenceSession.create(path.join(dir, 'model.onnx'));
}

async function run(session: ort.InferenceSession, input: { data: Float32Array; shape: readonly number[] }): Promise<ort.Tensor> {
  const [inName] = session.inputNames;
  const [outName] = session.outputNames;
  const result = await session.run({ [inName!]: new ort.Tensor('float32', input.data, input.shape) });
  const t = result[outName!]!;
  assert.equal(t.type, 'float32');
  return t;
}

function errors(actual: Float32Array, expected: Float32Array): { maxAbs: number; relL2: number } {
  assert.equal(actual.length, expected.length);
  let maxAbs = 0;
  let num = 0;
  let den = 0;
  for (let i = 0; i < actual.length; i++) {
    assert.ok(Number.isFinite(actual[i]!), `finite output at ${i}`);
    const d = actual[i]! - expected[i]!;
    maxAbs = Math.max(maxAbs, Math.abs(d));
    num += d * d;
    den += expected[i]! * expected[i]!;
  }
  return { maxAbs, relL2: Math.sqrt(num / den) };
}

function assertClose(actual: Float32Array, expected: Float32Array, tol: { maxAbs: number; relL2: number }, what: string, t: TestContext): void {
  const e = errors(actual, expected);
  t.diagnostic(`${what}: max abs ${e.maxAbs.toExponential(2)}, rel L2 ${e.relL2.toExponential(2)}`);
  assert.ok(e.maxAbs <= tol.maxAbs && e.relL2 <= tol.relL2, `${what}: max abs ${e.maxAbs.toExponential(2)}, rel L2 ${e.relL2.toExponential(2)}`);
}

describe('VAE decoder against the PyTorch reference', () => {
  for (const [caseName, prefix] of [
    ['sd1-vae-decode', 'first_stage_model.'],
    ['sd2-vae-decode', 'first_stage_model.'],
    ['tiny-vae-vae-decode', ''],
  ] as const) {
    for (const precision of ['float32', 'float16'] as const) {
      test(`${caseName}, ${precision} graph`, async (t) => {
        const c = manifestCase(caseName);
        const session = await build('decoder', await open(c.checkpoint, prefix), TINY, precision);
        assert.deepEqual(session.inputNames, ['latent_sample']);
        assert.deepEqual(session.outputNames, ['sample']);
        const out = await run(session, await npy(c.inputs.latent!));
        const want = await npy(c.outputs.image!);
        assert.deepEqual(out.dims, want.shape);
        assertClose(out.data as Float32Array, want.data, TOL[precision], caseName, t);
      });
    }
  }

  test('batch, height and width are free: a non-square batch of two decodes each latent as alone', async (t) => {
    const c = manifestCase('tiny-vae-vae-decode');
    const session = await build('decoder', await open(c.checkpoint, ''), TINY, 'float32');
    const [h, w] = [3, 5];
    const latent = new Float32Array(2 * 4 * h * w).map((_, i) => Math.sin(i * 0.37));
    const both = await run(session, { data: latent, shape: [2, 4, h, w] });
    assert.deepEqual(both.dims, [2, 3, 2 * h, 2 * w]);
    const second = await run(session, { data: latent.slice(4 * h * w), shape: [1, 4, h, w] });
    assertClose((both.data as Float32Array).subarray(3 * 4 * h * w), second.data as Float32Array, TOL.float32, 'second of the batch', t);
  });

  test('a checkpoint that does not match the architecture fails at build time with a message', async () => {
    const weights = await open('tiny-vae.safetensors', '');
    await assert.rejects(build('decoder', weights, { ...TINY, ch: 64 }, 'float32'), (e: unknown) => e instanceof CheckpointError && /decoder\.conv_in/.test(e.message));
    await assert.rejects(build('decoder', weights, { ...TINY, chMult: [1, 2, 2] }, 'float32'), CheckpointError);
    await assert.rejects(build('encoder', weights, { ...TINY, numResBlocks: 2 }, 'float32'), CheckpointError);
  });
});

describe('VAE encoder against the PyTorch reference', () => {
  for (const precision of ['float32', 'float16'] as const) {
    test(`sd1-vae-encode: the posterior mean, ${precision} graph`, async (t) => {
      const c = manifestCase('sd1-vae-encode');
      const session = await build('encoder', await open(c.checkpoint, 'first_stage_model.'), TINY, precision);
      assert.deepEqual(session.inputNames, ['sample']);
      assert.deepEqual(session.outputNames, ['latent_sample']);
      const out = await run(session, await npy(c.inputs.image!));
      const want = await npy(c.outputs.mean!);
      assert.deepEqual(out.dims, want.shape);
      assertClose(out.data as Float32Array, want.data, TOL[precision], 'posterior mean', t);
    });
  }
});
