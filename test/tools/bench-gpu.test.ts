import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { validateGraph } from '../../server/engine/validate.js';
import { benchGraph, formatReport, runBench, unionWithin } from '../../tools/bench-gpu/bench.js';
import { bundledGraph } from '../helpers/graphs.js';
import type { TinyWorkspace } from '../helpers/tiny-models.js';
import { tinyWorkspace } from '../helpers/tiny-models.js';

// The GPU benchmark harness (tools/bench-gpu, issue 8) on tiny CPU models: the device run has no time to find a
// renamed graph node or a broken metric, so its plumbing is checked here. The PyTorch side needs Python and is not.

describe('bench-gpu harness', () => {
  let ws: TinyWorkspace;
  before(async () => {
    ws = await tinyWorkspace({ general: { seed: 1 }, expert: { seed: 2 } });
  });
  after(async () => {
    await ws.cleanup();
  });

  it('points the bundled cross-domain graph at general/ and expert/ and saves the three latents', () => {
    const g = benchGraph(bundledGraph('magicfusion-cross-domain'), 'cuda', 7, 256);
    const checked = validateGraph(g);
    assert.deepEqual(checked.issues, []);
    assert.equal(g.nodes.base_model!.params!.path, 'general');
    assert.equal(g.nodes.other_model!.params!.provider, 'cuda');
    assert.equal(g.nodes.noise!.params!.width, 256);
    for (const id of ['sample_fused', 'sample_base', 'sample_other']) assert.equal(g.nodes[id]!.params!.steps, 7);
    for (const name of ['fused', 'general', 'expert']) assert.equal(g.nodes[`bench_latent_${name}`]!.type, 'SaveLatent');
    assert.throws(() => benchGraph(bundledGraph('txt2img'), 'cpu', 7, 256), /no node "base_model"/);
  });

  it('measures UNet busy time as a union of intervals', () => {
    assert.equal(unionWithin([], 0, 10), 0);
    assert.equal(unionWithin([{ start: 1, end: 3 }, { start: 2, end: 5 }, { start: 7, end: 8 }], 0, 10), 5);
    assert.equal(unionWithin([{ start: -5, end: 2 }, { start: 9, end: 20 }], 0, 10), 3);
  });

  it('runs twice on resident sessions, counts UNet calls and compares latents with a reference', async () => {
    const out = path.join(ws.output, 'bench');
    const common = { models: ws.models, provider: 'cpu' as const, steps: 4, size: 64, runs: 2, threads: 1, log: () => undefined };
    const first = await runBench({ ...common, out, rawCalls: 2, serialCheck: true });
    // 4 steps: t = 751, 501, 251, 1; "600" mode 2 blends only at t = 751, so the fused sampler calls the expert once.
    assert.equal(first.reported.unetCalls, 13);
    assert.deepEqual(first.reported.unetCallsPerModel, { general: 8, expert: 5 });
    assert.equal(first.passes.length, 2);
    assert.ok(first.reported.stepMs > 0 && first.reported.hostMsPerStep >= 0 && first.reported.hostPctOfStep < 100);
    assert.ok(first.serial && first.serial.unetCalls === 13);
    assert.ok(first.raw && first.raw.msPerCall > 0);
    assert.equal(first.bytesPerCall?.d2h, 2 * 4 * 8 * 8 * 4);
    // On the CPU provider the conditioning (2×77×32 fp32) is a host tensor, larger than the 2×4×8×8 fp32 latent batch.
    assert.deepEqual(
      { ...first.bytesPerCall, d2h: undefined },
      { h2d: 2 * 4 * 8 * 8 * 4 + 2 * 77 * 32 * 4 + 2 * 4, d2h: undefined, largest: 2 * 77 * 32 * 4, latent: 2 * 4 * 8 * 8 * 4, conditioningOnDevice: false },
    );
    assert.equal(first.models.dtype, 'float32');
    for (const f of ['fused.npy', 'general.npy', 'expert.npy', 'fusegraph.json']) assert.ok(existsSync(path.join(out, f)), f);

    // A reference.json whose latents are this run's: the second bench must reproduce them bit for bit.
    const ref = path.join(ws.output, 'ref');
    await mkdir(ref, { recursive: true });
    const latents: Record<string, string> = {};
    for (const run of ['general', 'expert', 'fused']) {
      await copyFile(path.join(out, `${run}.npy`), path.join(ref, `math_${run}.npy`));
      latents[run] = `math_${run}.npy`;
    }
    const variant = { attention: 'math', total_ms: 1000, unet_calls: 16, unet_ms_per_call: 50, step_ms: 60, host_ms_per_step: 1, peak_mem_allocated_mib: null, peak_mem_nvidia_smi_mib: null, latents };
    await writeFile(path.join(ref, 'reference.json'), JSON.stringify({ device: 'cpu', torch: 'test', precision: 'full', steps: 4, size: 64, primary: 'math', variants: { math: variant } }));
    const second = await runBench({ ...common, out: path.join(ws.output, 'bench2'), rawCalls: 0, serialCheck: false, torchResult: path.join(ref, 'reference.json') });
    for (const run of ['general', 'expert', 'fused']) assert.equal(second.latentDiff?.[run]?.maxAbs, 0, run);
    assert.equal(second.ratios.math, second.reported.totalMs / 1000);
    const text = formatReport(second).join('\n');
    assert.match(text, /PyTorch math \(ref\)/);
    assert.match(text, /speed: FuseGraph wall time = [\d.]+× PyTorch math/);
  });
});
