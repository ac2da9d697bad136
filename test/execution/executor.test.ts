import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Graph } from '../../nodes/graph-format.js';
import { NodeCache } from '../../server/engine/cache.js';
import { GraphValidationError, NodeExecutionError, ReportedRunError, RunCancelledError } from '../../server/engine/errors.js';
import { toRunError } from '../../server/services/run-error.js';
import type { ExecutionEvent } from '../../server/engine/events.js';
import { executeGraph } from '../../server/execution/executor.js';
import { validateGraph } from '../../server/engine/validate.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { encodeNpy } from '../../server/sd/npy.js';
import { writeTinyModel } from '../../tools/tiny-models/make-tiny-model.js';
import { TOKENIZER_FIXTURE, bundledGraph, txt2imgGraph } from '../helpers/graphs.js';
import type { TinyWorkspace } from '../helpers/tiny-models.js';
import { tinyWorkspace } from '../helpers/tiny-models.js';

function crossDomain(t: number, steps = 20): Graph {
  const g = bundledGraph('magicfusion-cross-domain');
  g.nodes.base_model!.params = { path: 'general', provider: 'cpu' };
  g.nodes.other_model!.params = { path: 'cartoon', provider: 'cpu' };
  g.nodes.noise!.params = { ...g.nodes.noise!.params, width: 64, height: 64 };
  g.nodes.schedule!.params = { t };
  for (const id of ['sample_fused', 'sample_base', 'sample_other']) g.nodes[id]!.params = { steps };
  return g;
}

describe('executeGraph', () => {
  let ws: TinyWorkspace;
  let models: ModelManager;
  before(async () => {
    ws = await tinyWorkspace({ general: { seed: 1 }, cartoon: { seed: 2 } });
    models = new ModelManager({ threads: 1 });
  });
  after(async () => {
    await models.dispose();
    await ws.cleanup();
  });
  const roots = (): { models: string; input: string; output: string } => ({ models: ws.models, input: ws.input, output: ws.output });

  it('runs txt2img and reports events in order', async () => {
    const events: ExecutionEvent[] = [];
    const result = await executeGraph(txt2imgGraph('general', { steps: 5 }), { roots: roots(), models, onEvent: (e) => events.push(e), previewEvery: 2 });
    assert.equal(result.outputs.length, 1);
    assert.equal(result.outputs[0]!.kind, 'image');
    const sampleEvents = events.filter((e) => 'node' in e && e.node === 'sample').map((e) => e.type);
    // Previews every 2 steps and at the last one, each just before that step's progress event.
    assert.deepEqual(sampleEvents, ['node_started', 'progress', 'preview', 'progress', 'progress', 'preview', 'progress', 'preview', 'progress', 'node_done']);
    const progress = events.filter((e) => e.type === 'progress');
    assert.deepEqual(progress.map((e) => e.type === 'progress' && e.t), [801, 601, 401, 201, 1]);
    assert.ok(events.findIndex((e) => e.type === 'output') > events.findIndex((e) => e.type === 'node_started' && e.node === 'save'));
    assert.deepEqual(Object.values(result.unetCalls), [5]);
  });

  it('runs what bypass leaves: a bypassed BlendNoise makes the fused branch the base model alone', async () => {
    const g = crossDomain(600, 4);
    g.nodes.snb!.mode = 'bypass';
    g.nodes.save_expert!.mode = 'mute';
    const result = await executeGraph(g, { roots: roots(), models });
    const byNode = new Map(result.outputs.map((o) => [o.node, o.path]));
    assert.deepEqual([...byNode.keys()].sort(), ['save_fused', 'save_general'], 'the muted SaveImage wrote nothing');
    const pixels = async (file: string) => (await sharp(file).raw().toBuffer()).toString('base64');
    assert.equal(await pixels(byNode.get('save_fused')!), await pixels(byNode.get('save_general')!));
  });

  it('refuses an invalid graph before running anything', async () => {
    const g = txt2imgGraph('general');
    g.nodes.sample!.params = { steps: -3 };
    await assert.rejects(executeGraph(g, { roots: roots(), models }), (err: unknown) => err instanceof GraphValidationError && err.issues[0]!.node === 'sample');
  });

  it('names the node and field when a model folder is missing: at admission for a graph, at LoadModel for a plan', async () => {
    await assert.rejects(executeGraph(txt2imgGraph('nowhere'), { roots: roots(), models }), (err: unknown) => {
      assert.ok(err instanceof GraphValidationError);
      assert.deepEqual(err.issues.map((i) => [i.node, i.field, i.code]), [['model', 'params.path', 'model_unavailable']]);
      assert.match(err.issues[0]!.message, /model folder not found: models\/nowhere/);
      return true;
    });
    // A plan was admitted already (serve's submission) and is not checked again: the folder vanished since.
    await assert.rejects(executeGraph(validateGraph(txt2imgGraph('nowhere')).plan!, { roots: roots(), models }), (err: unknown) => {
      assert.ok(err instanceof NodeExecutionError);
      assert.equal(err.node, 'model');
      assert.equal(err.field, 'params.path');
      assert.match(err.message, /model folder not found/);
      // What a client learns says why in a code (nodes/protocol.ts), once; a worker's report crosses Redis as it is.
      const report = toRunError(err, (t) => t.replaceAll(ws.root, 'ROOT'));
      assert.equal(report.code, 'model_missing');
      assert.equal(toRunError(new ReportedRunError(report), () => 'redacted twice'), report);
      return true;
    });
  });

  it('cancels within one DDIM step', async () => {
    const controller = new AbortController();
    let progressAfterAbort = 0;
    const run = executeGraph(txt2imgGraph('general', { steps: 200 }), {
      roots: roots(),
      models,
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type !== 'progress') return;
        if (controller.signal.aborted) progressAfterAbort++;
        if (e.step === 3) controller.abort();
      },
    });
    await assert.rejects(run, RunCancelledError);
    assert.equal(progressAfterAbort, 0);
  });

  it('reuses unchanged nodes across runs and re-runs only what a changed switch time affects', async () => {
    const cache = new NodeCache();
    const first = await executeGraph(crossDomain(600), { roots: roots(), models, cache });
    // Identical work inside one run is done once: both prompts are the same text on the same encoder.
    assert.deepEqual(first.cachedNodes, ['other_prompt']);
    assert.equal(first.outputs.length, 3);

    const same = await executeGraph(crossDomain(600), { roots: roots(), models, cache });
    assert.deepEqual(Object.values(same.unetCalls).reduce((a, b) => a + b, 0), 0);
    assert.deepEqual(same.outputs.map((o) => o.name).sort(), first.outputs.map((o) => o.name).sort());

    const changed = await executeGraph(crossDomain(400), { roots: roots(), models, cache });
    for (const id of ['sample_base', 'sample_other', 'decode_general', 'decode_expert', 'save_general', 'save_expert', 'base_prompt', 'uncond', 'noise']) {
      assert.ok(changed.cachedNodes.includes(id), `${id} should be cached`);
    }
    assert.ok(!changed.cachedNodes.includes('sample_fused'));
    assert.ok(changed.timings.sample_fused !== undefined);
    // Only the fused loop ran: 20 general calls, and the cartoon model inside the window t > 400 (12 of 20 steps).
    const calls = Object.entries(changed.unetCalls).map(([k, v]) => [k.includes('general') ? 'general' : 'cartoon', v]);
    assert.deepEqual(Object.fromEntries(calls), { general: 20, cartoon: 12 });
  });

  it('recomputes when a model folder or an input file changes on disk, with the same params', async () => {
    const cache = new NodeCache();
    const dir = path.join(ws.models, 'swap');
    await writeTinyModel(dir, { tokenizerDir: TOKENIZER_FIXTURE, seed: 5 });
    const first = await executeGraph(txt2imgGraph('swap', { steps: 3 }), { roots: roots(), models, cache });
    const again = await executeGraph(txt2imgGraph('swap', { steps: 3 }), { roots: roots(), models, cache });
    assert.ok(again.cachedNodes.includes('sample'));

    await writeTinyModel(dir, { tokenizerDir: TOKENIZER_FIXTURE, seed: 6 }); // re-exported with other weights
    const changed = await executeGraph(txt2imgGraph('swap', { steps: 3 }), { roots: roots(), models, cache });
    assert.ok(!changed.cachedNodes.includes('sample'));
    const before = await readFile(first.outputs[0]!.path);
    const after = await readFile(changed.outputs[0]!.path);
    assert.notDeepEqual(before.subarray(0, before.indexOf('iTXt')), after.subarray(0, after.indexOf('iTXt')));

    const latentGraph = (): Graph => ({
      format: 'fusegraph', version: 2,
      nodes: {
        load: { type: 'LoadLatent', params: { path: 'x.npy' } },
        save: { type: 'SaveLatent', params: { filename: 'copy.npy' }, inputs: { latent: { node: 'load', output: 'latent' } } },
      },
    });
    await writeFile(path.join(ws.input, 'x.npy'), encodeNpy(Float32Array.of(1, 2), [1, 1, 1, 2]));
    await executeGraph(latentGraph(), { roots: roots(), models, cache });
    assert.deepEqual([...(await executeGraph(latentGraph(), { roots: roots(), models, cache })).cachedNodes].sort(), ['load', 'save']);
    await writeFile(path.join(ws.input, 'x.npy'), encodeNpy(Float32Array.of(3, 4, 5), [1, 1, 1, 3]));
    const reread = await executeGraph(latentGraph(), { roots: roots(), models, cache });
    assert.deepEqual(reread.cachedNodes, []);
    assert.deepEqual(await readFile(path.join(ws.output, 'copy.npy')), encodeNpy(Float32Array.of(3, 4, 5), [1, 1, 1, 3]));
  });
});
