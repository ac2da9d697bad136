// The WebGPU execution provider through the engine: two models' workers on WebGPU at once, as a fused run does.
// onnxruntime-node puts every WebGPU session of a process on one WebGPU context, and two threads using it at the
// same time crashed the process (seen on an H100, reproduced on Mesa's lavapipe); the workers now take turns.
// Needs a Vulkan loader and a WebGPU adapter: on a machine without a GPU, tools/webgpu/setup-lavapipe.sh provides
// a software one (`source /tmp/lavapipe/env.sh` before `npm test`); elsewhere the test is skipped with the reason.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Graph } from '../../nodes/graph-format.js';
import { executeGraph } from '../../server/execution/executor.js';
import { vulkanLoaderPresent } from '../../server/runtime/providers.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import { decodeNpy } from '../../server/sd/npy.js';
import { snbGraph } from '../helpers/graphs.js';
import type { TinyWorkspace } from '../helpers/tiny-models.js';
import { tinyWorkspace } from '../helpers/tiny-models.js';

const skip = vulkanLoaderPresent() ? false : 'no Vulkan loader (libvulkan.so.1): tools/webgpu/setup-lavapipe.sh provides a software one';

function onProvider(g: Graph, provider: string): Graph {
  for (const node of Object.values(g.nodes)) if (node.type === 'LoadModel') node.params = { ...node.params, provider };
  return g;
}

/** The first WebGPU work of a test; undefined (and the test skipped) where the loader finds no adapter. */
async function withAdapter<T>(t: TestContext, work: () => Promise<T>): Promise<T | undefined> {
  try {
    return await work();
  } catch (err) {
    if (!/adapter/i.test((err as Error).message)) throw err;
    t.skip(`no WebGPU adapter: ${(err as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

describe('WebGPU execution provider', { skip }, () => {
  let ws: TinyWorkspace;
  let out: string;
  before(async () => {
    ws = await tinyWorkspace({ general: { seed: 1 }, cartoon: { seed: 2 } });
    out = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-webgpu-'));
  });
  after(async () => {
    await ws.cleanup();
    await rm(out, { recursive: true, force: true });
  });

  it('runs a fused loop with both models on WebGPU at once and matches the CPU', async (t) => {
    const graph = (): Graph =>
      snbGraph({ base: 'general', other: 'cartoon', promptBase: 'a red star', promptOther: 'a red star', seed: 3, size: 64, mode: 2, switchT: 400, steps: 12 });
    const run = async (provider: string, models: ModelManager, dir: string): Promise<Float32Array> => {
      await executeGraph(onProvider(graph(), provider), { roots: { models: ws.models, input: out, output: dir }, models });
      return decodeNpy(await readFile(path.join(dir, 'x.npy'))).data;
    };
    const cpuModels = new ModelManager({ threads: 1 });
    const gpuModels = new ModelManager();
    try {
      const ref = await run('cpu', cpuModels, path.join(out, 'cpu'));
      const first = await withAdapter(t, () => run('webgpu', gpuModels, path.join(out, 'webgpu-1')));
      if (!first) return;
      // Resident sessions, second run: the two workers' calls interleave on the shared context again.
      const second = await run('webgpu', gpuModels, path.join(out, 'webgpu-2'));
      assert.deepEqual(gpuModels.loadedKeys().map((k) => k.split('|')[1]).sort(), ['webgpu', 'webgpu']);
      for (const key of gpuModels.loadedKeys()) assert.equal((await gpuModels.resident(key))?.conditioningOnDevice, true, `${key} keeps its conditioning in GPU memory`);
      let maxDiff = 0;
      let maxRef = 0;
      for (let i = 0; i < ref.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(first[i]! - ref[i]!));
        maxRef = Math.max(maxRef, Math.abs(ref[i]!));
      }
      t.diagnostic(`webgpu vs cpu: max |diff| ${maxDiff.toExponential(2)} (max |cpu| ${maxRef.toFixed(2)})`);
      assert.ok(maxDiff < 1e-3 * Math.max(1, maxRef), `webgpu differs from cpu by ${maxDiff}`);
      assert.deepEqual(second, first, 'the same graph on resident WebGPU sessions gives the same latent');
    } finally {
      await cpuModels.dispose();
      await gpuModels.dispose();
    }
  });

  it('keeps conditionings in GPU memory, more than the worker holds, and frees the dropped ones', async (t) => {
    const cpuModels = new ModelManager({ threads: 1 });
    const gpuModels = new ModelManager();
    try {
      const cpu = await cpuModels.acquire(path.join(ws.models, 'general'), 'cpu');
      const gpu = await withAdapter(t, () => gpuModels.acquire(path.join(ws.models, 'general'), 'webgpu'));
      if (!gpu) return;
      assert.equal(gpu.conditioningOnDevice, true);
      assert.equal(cpu.conditioningOnDevice, false);
      const hidden = gpu.info.parts.unet.inputs.find((i) => i.name === 'encoder_hidden_states')!.shape[2] as number;
      const contexts = Array.from({ length: 20 }, (_, k) => ({
        data: Float32Array.from({ length: 2 * 77 * hidden }, (_, i) => Math.sin(i * 0.37 + k)),
        shape: [2, 77, hidden],
      }));
      const sample = (): { data: Float32Array; shape: number[] } => ({ data: Float32Array.from({ length: 2 * 4 * 8 * 8 }, (_, i) => Math.cos(i * 0.11)), shape: [2, 4, 8, 8] });
      // 20 distinct conditionings overflow the worker's 16 kept tensors, then the first (dropped, freed) comes back.
      for (const context of [...contexts, contexts[0]!, contexts[19]!]) {
        const [a, b] = await Promise.all([cpu.predict(sample(), 500, context), gpu.predict(sample(), 500, context)]);
        let maxDiff = 0;
        for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
        assert.ok(maxDiff < 1e-3, `conditioning ${contexts.indexOf(context)}: webgpu differs from cpu by ${maxDiff}`);
      }
    } finally {
      await cpuModels.dispose();
      await gpuModels.dispose();
    }
  });
});
