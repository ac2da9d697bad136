/**
 * SdModel through the ModelManager, on real tiny ONNX folders of every exporter variant (tools/tiny-models).
 *
 * Every comparison runs the same inputs through a second, independent onnxruntime-node session created by this test
 * and fed by hand with the dtypes and ranks the variant declares (not read back from the engine), so a wrong dtype,
 * rank, conversion or scaling in the engine shows up as a mismatch or an ORT error.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import * as ort from 'onnxruntime-node';
import sharp from 'sharp';

import type { Graph } from '../../nodes/graph-format.js';
import { GraphValidationError, NodeExecutionError } from '../../server/engine/errors.js';
import { executeGraph } from '../../server/execution/executor.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import { fromFloat16Array, toFloat16Array } from '../../server/runtime/float16.js';
import { decodeNpy, encodeNpy } from '../../server/sd/npy.js';
import type { SdModel } from '../../server/sd/sd-model.js';
import {
  TINY_VARIANTS,
  resolveTinyModelOptions,
  writeTinyModel,
  type ResolvedTinyModelOptions,
  type TinyModelOptions,
} from '../../tools/tiny-models/make-tiny-model.js';

// One intra-op thread on both sides: the engine's worker sessions and this test's sessions then run the same kernels
// in the same order.
const THREADS = 1;
const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  executionProviders: ['cpu'],
  graphOptimizationLevel: 'all',
  intraOpNumThreads: THREADS,
  executionMode: 'sequential',
};

let tmp: string;
let models: ModelManager;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-sd-model-'));
  models = new ModelManager({ threads: THREADS });
});

after(async () => {
  await models.dispose();
  await rm(tmp, { recursive: true, force: true });
});

// --- helpers -------------------------------------------------------------------------------------------------------

/** Deterministic values in [-amp, amp). */
function lcg(n: number, seed: number, amp = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = ((a / 4294967296) * 2 - 1) * amp;
  }
  return out;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (!(Math.abs(a - e) <= tol * (1 + Math.abs(e)))) assert.fail(`${what}[${i}]: engine ${a}, direct ${e}`);
  }
}

function assertExact(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) assert.fail(`${what}[${i}]: engine ${actual[i]}, direct ${expected[i]}`);
  }
}

/** fp32 outputs agree to 1e-6; fp16 outputs are compared bit for bit after both sides convert them to float32. */
function assertSame(o: ResolvedTinyModelOptions, actual: Float32Array, expected: Float32Array, what: string): void {
  if (o.dtype === 'float16') assertExact(actual, expected, what);
  else assertClose(actual, expected, 1e-6, what);
}

/** A float tensor in the declared float dtype. */
function floatTensor(o: ResolvedTinyModelOptions, data: Float32Array, dims: readonly number[]): ort.Tensor {
  return o.dtype === 'float16' ? new ort.Tensor('float16', toFloat16Array(data), dims) : new ort.Tensor('float32', data, dims);
}

function floatOut(o: ResolvedTinyModelOptions, t: ort.Tensor | undefined): Float32Array {
  assert.ok(t, 'output missing');
  assert.equal(t.type, o.dtype, `output dtype is ${t.type}, declared ${o.dtype}`);
  return o.dtype === 'float16' ? fromFloat16Array(t.data as Uint16Array) : (t.data as Float32Array);
}

interface Direct {
  readonly textEncoder: ort.InferenceSession;
  readonly unet: ort.InferenceSession;
  readonly vaeDecoder: ort.InferenceSession;
  release(): Promise<void>;
}

async function openDirect(dir: string): Promise<Direct> {
  const [textEncoder, unet, vaeDecoder] = await Promise.all(
    ['text_encoder', 'unet', 'vae_decoder'].map((p) => ort.InferenceSession.create(path.join(dir, p, 'model.onnx'), SESSION_OPTIONS)),
  );
  return {
    textEncoder: textEncoder!,
    unet: unet!,
    vaeDecoder: vaeDecoder!,
    async release() {
      await Promise.all([textEncoder!.release(), unet!.release(), vaeDecoder!.release()]);
    },
  };
}

async function directEncode(o: ResolvedTinyModelOptions, d: Direct, rows: readonly (readonly number[])[]): Promise<Float32Array> {
  const flat = rows.flat();
  const dims = [rows.length, rows[0]!.length];
  const ids =
    o.inputIdsType === 'int64'
      ? new ort.Tensor('int64', BigInt64Array.from(flat, (v) => BigInt(v)), dims)
      : new ort.Tensor('int32', Int32Array.from(flat), dims);
  const out = await d.textEncoder.run({ input_ids: ids });
  return floatOut(o, out['last_hidden_state']);
}

async function directPredict(
  o: ResolvedTinyModelOptions,
  d: Direct,
  sample: Float32Array,
  sampleDims: readonly number[],
  t: number,
  context: Float32Array,
  contextDims: readonly number[],
): Promise<Float32Array> {
  const batch = sampleDims[0]!;
  // Rank 0 → a scalar; rank 1 → one value per batch row.
  const dims = o.timestep.rank === 0 ? [] : [batch];
  const n = o.timestep.rank === 0 ? 1 : batch;
  let timestep: ort.Tensor;
  if (o.timestep.type === 'int64') timestep = new ort.Tensor('int64', new BigInt64Array(n).fill(BigInt(t)), dims);
  else if (o.timestep.type === 'float16') timestep = new ort.Tensor('float16', toFloat16Array(new Float32Array(n).fill(t)), dims);
  else timestep = new ort.Tensor('float32', new Float32Array(n).fill(t), dims);
  const out = await d.unet.run({
    sample: floatTensor(o, sample, sampleDims),
    timestep,
    encoder_hidden_states: floatTensor(o, context, contextDims),
  });
  return floatOut(o, out['out_sample']);
}

/** Divides by the scaling factor, then decodes one image at a time. */
async function directDecode(o: ResolvedTinyModelOptions, d: Direct, latent: Float32Array, dims: readonly number[], scaling: number): Promise<Float32Array> {
  const [n, c, h, w] = dims as [number, number, number, number];
  const per = c * h * w;
  const parts: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    const scaled = new Float32Array(per);
    for (let j = 0; j < per; j++) scaled[j] = latent[i * per + j]! / scaling;
    const out = await d.vaeDecoder.run({ latent_sample: floatTensor(o, scaled, [1, c, h, w]) });
    parts.push(floatOut(o, out['sample']));
  }
  const all = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  return all;
}

async function makeModel(name: string, opts: TinyModelOptions): Promise<{ dir: string; o: ResolvedTinyModelOptions }> {
  const dir = path.join(tmp, name);
  await writeTinyModel(dir, opts);
  return { dir, o: resolveTinyModelOptions(opts) };
}

/** PNG width and height from the IHDR chunk. */
function pngSize(png: Buffer): { width: number; height: number } {
  assert.equal(png.subarray(12, 16).toString('latin1'), 'IHDR');
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

// --- every exporter variant ----------------------------------------------------------------------------------------

describe('every tiny exporter variant loads and matches a hand-fed ORT session', () => {
  for (const variant of TINY_VARIANTS) {
    test(`${variant.name}: ${variant.description}`, async () => {
      const { dir, o } = await makeModel(`variant-${variant.name}`, { ...variant.options, seed: 11 });
      const m = await models.acquire(dir, 'cpu');
      const direct = await openDirect(dir);
      try {
        assert.equal(m.provider, 'cpu');
        // info: shapes and dtypes exactly as the variant declares them.
        assert.equal(m.info.latentChannels, 4);
        assert.equal(m.info.vaeFactor, 8);
        assert.equal(m.info.scalingFactor, 0.18215);
        assert.equal(m.info.hiddenSize, o.hidden);
        assert.deepEqual(
          {
            ids: m.info.dtypes['textEncoder.input_ids'],
            sample: m.info.dtypes['unet.sample'],
            timestep: m.info.dtypes['unet.timestep'],
            ehs: m.info.dtypes['unet.encoder_hidden_states'],
            latent: m.info.dtypes['vaeDecoder.latent_sample'],
          },
          { ids: o.inputIdsType, sample: o.dtype, timestep: o.timestep.type, ehs: o.dtype, latent: o.dtype },
        );
        const tMeta = m.info.parts.unet.inputs.find((i) => i.name === 'timestep');
        assert.equal(tMeta?.shape.length, o.timestep.rank, 'timestep rank');
        if (o.timestep.rank === 1) assert.deepEqual(tMeta?.shape, [o.timestep.dim]);

        // encodeText: a prompt and the empty prompt, batched.
        const rows = [m.tokenizer.encodePadded('a photo of an astronaut riding a horse'), m.tokenizer.encodePadded('')];
        assert.equal(rows[0]!.length, 77);
        const text = await m.encodeText(rows);
        assert.deepEqual(text.shape, [2, 77, o.hidden]);
        assertSame(o, text.data, await directEncode(o, direct, rows), 'encodeText');

        // predict: a [2,4,8,8] batch at two timesteps; the timestep must reach the network.
        const sampleDims = [2, 4, 8, 8];
        const sample = lcg(2 * 4 * 8 * 8, 5, 1.5);
        const contextDims = [2, 77, o.hidden];
        const before = m.unetCalls;
        const eps981 = await m.predict({ data: sample, shape: sampleDims }, 981, text);
        const eps1 = await m.predict({ data: sample, shape: sampleDims }, 1, text);
        assert.equal(m.unetCalls - before, 2, 'one UNet call per predict');
        assertSame(o, eps981, await directPredict(o, direct, sample, sampleDims, 981, text.data, contextDims), 'predict t=981');
        assertSame(o, eps1, await directPredict(o, direct, sample, sampleDims, 1, text.data, contextDims), 'predict t=1');
        assert.ok(eps981.some((v, i) => Math.abs(v - eps1[i]!) > 1e-3), 'the timestep changes the prediction');

        // decode: two latents, one image at a time, divided by the scaling factor.
        const latentDims = [2, 4, 8, 8];
        const latent = lcg(2 * 4 * 8 * 8, 9, 0.5);
        const image = await m.decode({ data: latent, shape: latentDims });
        assert.deepEqual(image.shape, [2, 3, 64, 64]);
        assertSame(o, image.data, await directDecode(o, direct, latent, latentDims, 0.18215), 'decode');
      } finally {
        models.release(m);
        await direct.release();
      }
    });
  }
});

// --- latent shape from the model -----------------------------------------------------------------------------------

describe('graph runs', () => {
  test('latentChannels 3 and vaeFactor 4: NoiseLatent is [B,3,H/4,W/4] and the decoded images are H×W', async () => {
    const root = path.join(tmp, 'lc3-root');
    await writeTinyModel(path.join(root, 'models', 'lc3'), { seed: 21, latentChannels: 3, vaeFactor: 4 });
    const m = await models.acquire(path.join(root, 'models', 'lc3'), 'cpu');
    try {
      assert.equal(m.info.latentChannels, 3);
      assert.equal(m.info.vaeFactor, 4);
    } finally {
      models.release(m);
    }
    const W = 64;
    const H = 48;
    const B = 2;
    const graph: Graph = {
      format: 'fusegraph',
      version: 2,
      nodes: {
        model: { type: 'LoadModel', params: { path: 'lc3', provider: 'cpu' } },
        pos: { type: 'EncodePrompt', params: { text: 'a red fox' }, inputs: { model: { node: 'model', output: 'model' } } },
        neg: { type: 'EncodePrompt', params: { text: '' }, inputs: { model: { node: 'model', output: 'model' } } },
        noise: { type: 'NoiseLatent', params: { seed: 7, width: W, height: H, batch: B }, inputs: { model: { node: 'model', output: 'model' } } },
        eps: {
          type: 'PredictNoise',
          params: { guidance_scale: 7.5 },
          inputs: { model: { node: 'model', output: 'model' }, positive: { node: 'pos', output: 'cond' }, negative: { node: 'neg', output: 'cond' } },
        },
        ddim: {
          type: 'DDIMStep',
          params: { steps: 3 },
          inputs: { model: { node: 'model', output: 'model' }, noise: { node: 'eps', output: 'noise' }, latent: { node: 'noise', output: 'latent' } },
        },
        save_noise: { type: 'SaveLatent', params: { filename: 'noise.npy' }, inputs: { latent: { node: 'noise', output: 'latent' } } },
        save_x0: { type: 'SaveLatent', params: { filename: 'x0.npy' }, inputs: { latent: { node: 'ddim', output: 'latent' } } },
        decode: { type: 'Decode', inputs: { model: { node: 'model', output: 'model' }, latent: { node: 'ddim', output: 'latent' } } },
        save: { type: 'SaveImage', params: { prefix: 'lc3' }, inputs: { image: { node: 'decode', output: 'image' } } },
      },
    };
    const output = path.join(root, 'output');
    const result = await executeGraph(graph, { roots: { models: path.join(root, 'models'), input: path.join(root, 'input'), output }, models });
    assert.deepEqual(Object.values(result.unetCalls), [3]);
    const noise = decodeNpy(await readFile(path.join(output, 'noise.npy')));
    assert.deepEqual(noise.shape, [B, 3, H / 4, W / 4]);
    const x0 = decodeNpy(await readFile(path.join(output, 'x0.npy')));
    assert.deepEqual(x0.shape, [B, 3, H / 4, W / 4]);
    assert.ok(x0.data.every(Number.isFinite));
    const pngs = result.outputs.filter((f) => f.kind === 'image');
    assert.equal(pngs.length, B);
    for (const f of pngs) assert.deepEqual(pngSize(await readFile(f.path)), { width: W, height: H });
  });

  test('Decode divides by scaling_factor from vae_decoder/config.json (0.5 here)', async () => {
    const root = path.join(tmp, 'sf-root');
    const dir = path.join(root, 'models', 'sf');
    const SF = 0.5;
    await writeTinyModel(dir, { seed: 31, scalingFactor: SF });
    const cfg = JSON.parse(await readFile(path.join(dir, 'vae_decoder', 'config.json'), 'utf8')) as { scaling_factor: number };
    assert.equal(cfg.scaling_factor, SF);
    const o = resolveTinyModelOptions({ seed: 31, scalingFactor: SF });
    const dims = [1, 4, 6, 5];
    const latent = lcg(4 * 6 * 5, 17, 0.9);
    const direct = await openDirect(dir);
    let m: SdModel | undefined;
    try {
      m = await models.acquire(dir, 'cpu');
      assert.equal(m.info.scalingFactor, SF);
      // SdModel.decode against latent / 0.5 computed here.
      const expected = await directDecode(o, direct, latent, dims, SF);
      assertClose((await m.decode({ data: latent, shape: dims })).data, expected, 1e-6, 'decode');
      const wrong = await directDecode(o, direct, latent, dims, 0.18215);
      assert.ok(expected.some((v, i) => Math.abs(v - wrong[i]!) > 0.05), 'the scaling factor matters for this latent');

      // And end to end: LoadLatent → Decode → SaveImage, compared with clip(x/2+0.5)·255 of the hand computation.
      await mkdir(path.join(root, 'input'), { recursive: true });
      await writeFile(path.join(root, 'input', 'z.npy'), encodeNpy(latent, dims));
      const graph: Graph = {
        format: 'fusegraph',
        version: 2,
        nodes: {
          model: { type: 'LoadModel', params: { path: 'sf', provider: 'cpu' } },
          z: { type: 'LoadLatent', params: { path: 'z.npy' } },
          decode: { type: 'Decode', inputs: { model: { node: 'model', output: 'model' }, latent: { node: 'z', output: 'latent' } } },
          save: { type: 'SaveImage', params: { prefix: 'sf' }, inputs: { image: { node: 'decode', output: 'image' } } },
        },
      };
      const output = path.join(root, 'output');
      const result = await executeGraph(graph, { roots: { models: path.join(root, 'models'), input: path.join(root, 'input'), output }, models });
      const [png] = result.outputs;
      assert.ok(png);
      const { data: rgb, info } = await sharp(png.path).raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual([info.width, info.height, info.channels], [40, 48, 3]);
      const quantize = (img: Float32Array): Uint8Array => {
        const plane = 48 * 40;
        const out = new Uint8Array(plane * 3);
        for (let c = 0; c < 3; c++) for (let p = 0; p < plane; p++) out[p * 3 + c] = Math.round(Math.min(1, Math.max(0, img[c * plane + p]! / 2 + 0.5)) * 255);
        return out;
      };
      const want = quantize(expected);
      const notWant = quantize(wrong);
      let exact = 0;
      let offByWrong = 0;
      for (let i = 0; i < want.length; i++) {
        // ±1 only where float32 vs float64 rounding lands on the other side of a .5 boundary.
        assert.ok(Math.abs(rgb[i]! - want[i]!) <= 1, `pixel byte ${i}: ${rgb[i]} vs ${want[i]}`);
        if (rgb[i] === want[i]) exact++;
        offByWrong += Math.abs(rgb[i]! - notWant[i]!);
      }
      assert.ok(exact >= want.length * 0.99, `${exact}/${want.length} bytes exact`);
      assert.ok(offByWrong / want.length > 2, 'the PNG is not what the default 0.18215 would give');
    } finally {
      if (m) models.release(m);
      await direct.release();
    }
  });

  /** LoadModel → NoiseLatent → SaveLatent: the smallest graph that needs the model loaded. */
  function loadOnlyGraph(modelPath: string): Graph {
    return {
      format: 'fusegraph',
      version: 2,
      nodes: {
        load: { type: 'LoadModel', params: { path: modelPath, provider: 'cpu' } },
        noise: { type: 'NoiseLatent', params: { width: 64, height: 64 }, inputs: { model: { node: 'load', output: 'model' } } },
        save: { type: 'SaveLatent', inputs: { latent: { node: 'noise', output: 'latent' } } },
      },
    };
  }

  async function expectLoadError(root: string, modelPath: string, file: string): Promise<void> {
    const run = executeGraph(loadOnlyGraph(modelPath), {
      roots: { models: path.join(root, 'models'), input: path.join(root, 'input'), output: path.join(root, 'output') },
      models,
    });
    await assert.rejects(run, (err: unknown) => {
      assert.ok(err instanceof NodeExecutionError, `expected NodeExecutionError, got ${String(err)}`);
      assert.equal(err.node, 'load');
      assert.equal(err.nodeType, 'LoadModel');
      assert.equal(err.field, 'params.path');
      assert.ok(err.message.includes(file), `message names ${file}: ${err.message}`);
      return true;
    });
    // A failed load is not kept: a later run tries again instead of reusing the error.
    assert.ok(!models.loadedKeys().some((k) => k.startsWith(path.join(root, 'models', modelPath))));
  }

  test('a missing unet/model.onnx is refused at admission on the LoadModel node, field params.path, naming the file', async () => {
    const root = path.join(tmp, 'missing-root');
    const dir = path.join(root, 'models', 'missing');
    await writeTinyModel(dir, { seed: 41 });
    await unlink(path.join(dir, 'unet', 'model.onnx'));
    const run = executeGraph(loadOnlyGraph('missing'), {
      roots: { models: path.join(root, 'models'), input: path.join(root, 'input'), output: path.join(root, 'output') },
      models,
    });
    await assert.rejects(run, (err: unknown) => {
      assert.ok(err instanceof GraphValidationError, `expected GraphValidationError, got ${String(err)}`);
      const issue = err.issues.find((i) => i.node === 'load');
      assert.equal(issue?.field, 'params.path');
      assert.equal(issue?.code, 'model_unavailable');
      // Named relative to the models root: clients do not learn the server's layout.
      assert.ok(issue?.message.includes('missing/unet/model.onnx') && !issue.message.includes(root), issue?.message);
      return true;
    });
    assert.ok(!models.loadedKeys().some((k) => k.startsWith(dir)));
  });

  test('a truncated unet/model.onnx fails on the LoadModel node, field params.path, naming the file', async () => {
    const root = path.join(tmp, 'corrupt-root');
    const dir = path.join(root, 'models', 'corrupt');
    await writeTinyModel(dir, { seed: 42 });
    const file = path.join(dir, 'unet', 'model.onnx');
    await truncate(file, Math.floor((await stat(file)).size / 2));
    await expectLoadError(root, 'corrupt', file);
    // The same folder, once repaired, loads: nothing of the failure was cached.
    await writeTinyModel(dir, { seed: 42 });
    const result = await executeGraph(loadOnlyGraph('corrupt'), {
      roots: { models: path.join(root, 'models'), input: path.join(root, 'input'), output: path.join(root, 'output') },
      models,
    });
    assert.deepEqual(
      result.outputs.map((f) => f.name),
      ['latent.npy'],
    );
  });
});

// --- session reuse -------------------------------------------------------------------------------------------------

test('sessions are reused: acquiring a folder twice gives the same model and the same worker', async () => {
  const dir = path.join(tmp, 'reuse');
  await writeTinyModel(dir, { seed: 51 });
  const keysBefore = models.loadedKeys().length;
  // Concurrent acquires share the one load in flight; a later acquire (with a non-normalised path) finds it.
  const [a, b] = await Promise.all([models.acquire(dir, 'cpu'), models.acquire(dir, 'cpu')]);
  const c = await models.acquire(path.join(dir, '..', 'reuse'), 'cpu');
  try {
    assert.equal(a, b);
    assert.equal(a, c);
    assert.equal(models.loadedKeys().length, keysBefore + 1);
    const host = Reflect.get(a, 'host') as object;
    assert.equal(Reflect.get(c, 'host'), host, 'one SessionHost');
    const channelOf = (h: object) => Reflect.get(Reflect.get(h, 'conn') as object, 'channel') as object;
    assert.ok(channelOf(host));
    assert.equal(channelOf(Reflect.get(b, 'host') as object), channelOf(host), 'one session worker');
    // Calls through either handle land on the same counter.
    const before = a.unetCalls;
    const ctx = await b.encodeText([b.tokenizer.encodePadded('x'), b.tokenizer.encodePadded('')]);
    await c.predict({ data: lcg(2 * 4 * 8 * 8, 3), shape: [2, 4, 8, 8] }, 501, ctx);
    assert.equal(a.unetCalls, before + 1);
  } finally {
    models.release(a);
    models.release(b);
    models.release(c);
  }
  // Two graph runs on the same manager reuse it as well.
  const root = path.join(tmp, 'reuse-root');
  await mkdir(path.join(root, 'models'), { recursive: true });
  const graph: Graph = {
    format: 'fusegraph',
    version: 2,
    nodes: {
      load: { type: 'LoadModel', params: { path: 'reuse', provider: 'cpu' } },
      noise: { type: 'NoiseLatent', params: { width: 64, height: 64 }, inputs: { model: { node: 'load', output: 'model' } } },
      save: { type: 'SaveLatent', inputs: { latent: { node: 'noise', output: 'latent' } } },
    },
  };
  for (let i = 0; i < 2; i++) {
    await executeGraph(graph, { roots: { models: tmp, input: path.join(root, 'input'), output: path.join(root, 'output') }, models });
  }
  assert.equal(models.loadedKeys().length, keysBefore + 1);
  assert.equal(await models.acquire(dir, 'cpu'), a);
  models.release(a);
  assert.deepEqual((await readdir(path.join(root, 'output'))).sort(), ['latent.npy']);
});
