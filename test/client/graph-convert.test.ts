import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { EditorModel } from '../../client/editor/graph-convert.js';
import {
  freshNodeId, graphToModel, importGraph, modelToGraph, remapForInsert, subModel,
} from '../../client/editor/graph-convert.js';
import type { Graph } from '../../nodes/index.js';
import { getNodeDef } from '../../nodes/index.js';

const lookup = getNodeDef;

/** A small graph with every param written out, as the editor exports it. */
function fullGraph(): Graph {
  return {
    format: 'fusegraph',
    version: 2,
    meta: { name: 'round trip', description: 'every param explicit' },
    nodes: {
      model: { type: 'LoadModel', params: { path: 'tiny/general', provider: 'cpu', ema: false, vae: '', prediction: 'auto' }, ui: { x: 0, y: 0 } },
      prompt: { type: 'EncodePrompt', params: { text: 'a lion\nwith a crown', clip_skip: 1 }, inputs: { model: { node: 'model', output: 'model' } }, ui: { x: 320, y: -40 } },
      uncond: { type: 'EncodePrompt', params: { text: '', clip_skip: 1 }, inputs: { model: { node: 'model', output: 'model' } }, ui: { x: 320, y: 180 } },
      x_t: { type: 'NoiseLatent', params: { seed: 4294967295, width: 64, height: 48, batch: 2 }, inputs: { model: { node: 'model', output: 'model' } }, ui: { x: 320, y: 400 } },
      eps: {
        type: 'PredictNoise',
        params: { guidance_scale: 7.5 },
        inputs: { model: { node: 'model', output: 'model' }, negative: { node: 'uncond', output: 'cond' }, positive: { node: 'prompt', output: 'cond' } },
        ui: { x: 660, y: 0 },
      },
      sample: {
        type: 'DDIMStep',
        params: { steps: 3, eta: 0.25, seed: 7 },
        inputs: { latent: { node: 'x_t', output: 'latent' }, model: { node: 'model', output: 'model' }, noise: { node: 'eps', output: 'noise' } },
        ui: { x: 1000, y: 0 },
      },
      decode: { type: 'Decode', inputs: { latent: { node: 'sample', output: 'latent' }, model: { node: 'model', output: 'model' } }, ui: { x: 1340, y: 0 } },
      'save.final': { type: 'SaveImage', params: { prefix: 'out' }, inputs: { image: { node: 'decode', output: 'image' } }, ui: { x: 1680, y: -12 } },
    },
  };
}

function imported(value: unknown): EditorModel {
  const res = importGraph(value, lookup);
  assert.ok(res.ok, res.ok ? '' : res.errors.join('\n'));
  return res.model;
}

describe('graph v1 ⇄ editor model', () => {
  it('round-trips a graph exactly: ids, params, positions, links and meta', () => {
    const graph = fullGraph();
    assert.deepStrictEqual(modelToGraph(imported(graph)), graph);
  });

  it('keeps ids, param values and positions on the model', () => {
    const model = imported(fullGraph());
    assert.deepStrictEqual(model.nodes.map((n) => n.id), ['model', 'prompt', 'uncond', 'x_t', 'eps', 'sample', 'decode', 'save.final']);
    const prompt = model.nodes.find((n) => n.id === 'prompt');
    assert.deepStrictEqual(prompt?.params, { text: 'a lion\nwith a crown', clip_skip: 1 });
    assert.deepStrictEqual(prompt?.position, { x: 320, y: -40 });
    assert.equal(model.nodes.find((n) => n.id === 'x_t')?.params.seed, 4294967295);
  });

  it('turns inputs into links and back', () => {
    const model = imported(fullGraph());
    assert.equal(model.links.length, 12);
    assert.ok(model.links.some((l) => l.source === 'eps' && l.sourceOutput === 'noise' && l.target === 'sample' && l.targetInput === 'noise'));
    assert.deepStrictEqual(modelToGraph(model).nodes.sample?.inputs, fullGraph().nodes.sample?.inputs);
  });

  it('fills omitted params with their defaults, and export → import → export is stable', () => {
    const graph = fullGraph();
    delete graph.nodes.model?.params?.provider;
    delete graph.nodes.sample?.params?.seed;
    const once = modelToGraph(imported(graph));
    assert.equal(once.nodes.model?.params?.provider, 'auto');
    assert.equal(once.nodes.sample?.params?.seed, 0);
    assert.deepStrictEqual(modelToGraph(imported(once)), once);
  });

  it('round-trips every bundled graph after one normalisation', () => {
    for (const name of ['demo-fusion', 'magicfusion-cross-domain', 'txt2img']) {
      const graph = JSON.parse(readFileSync(new URL(`../../graphs/${name}.json`, import.meta.url), 'utf8')) as Graph;
      const exported = modelToGraph(imported(graph));
      assert.deepStrictEqual(Object.keys(exported.nodes), Object.keys(graph.nodes), name);
      for (const [id, node] of Object.entries(graph.nodes)) {
        const out = exported.nodes[id];
        assert.equal(out?.type, node.type, `${name}/${id}`);
        assert.deepStrictEqual(out?.ui, node.ui, `${name}/${id} position`);
        assert.deepStrictEqual(out?.inputs ?? {}, node.inputs ?? {}, `${name}/${id} links`);
        for (const [k, v] of Object.entries(node.params ?? {})) assert.deepStrictEqual(out?.params?.[k], v, `${name}/${id}.${k}`);
      }
      assert.deepStrictEqual(modelToGraph(imported(exported)), exported, `${name} stable`);
    }
  });

  it('lays out nodes without `ui` by depth instead of stacking them at 0,0', () => {
    const graph = fullGraph();
    for (const n of Object.values(graph.nodes)) delete n.ui;
    const model = imported(graph);
    const pos = (id: string) => model.nodes.find((n) => n.id === id)?.position;
    assert.equal(pos('model')?.x, 0);
    assert.ok((pos('prompt')?.x ?? 0) > 0);
    assert.ok((pos('save.final')?.x ?? 0) > (pos('decode')?.x ?? 0));
    assert.notDeepStrictEqual(pos('prompt'), pos('uncond'));
  });

  it('refuses malformed graphs and unknown node types, with reasons', () => {
    const notGraph = importGraph({ format: 'other', nodes: {} }, lookup);
    assert.equal(notGraph.ok, false);
    const future = importGraph({ format: 'fusegraph', version: 9, nodes: {} }, lookup);
    assert.ok(!future.ok && /newer/.test(future.errors.join()));
    const unknown = importGraph({ format: 'fusegraph', version: 2, nodes: { a: { type: 'Teleport' } } }, lookup);
    assert.ok(!unknown.ok && /node "a": unknown node type "Teleport"/.test(unknown.errors.join()));
  });

  it('drops dangling links and unknown params with warnings instead of failing', () => {
    const graph = fullGraph();
    graph.nodes.decode = { ...graph.nodes.decode!, inputs: { ...graph.nodes.decode!.inputs, latent: { node: 'gone', output: 'latent' } } };
    graph.nodes.eps = { ...graph.nodes.eps!, params: { guidance_scale: 5, cfg_rescale: 1 } };
    graph.nodes.sample = { ...graph.nodes.sample!, inputs: { ...graph.nodes.sample!.inputs, noise: { node: 'eps', output: 'nope' } } };
    const res = importGraph(graph, lookup);
    assert.ok(res.ok);
    assert.equal(res.warnings.length, 3);
    assert.ok(!res.model.links.some((l) => l.source === 'gone'));
    assert.deepStrictEqual(res.model.nodes.find((n) => n.id === 'eps')?.params, { guidance_scale: 5 });
  });

  it('rounds sub-pixel positions on export', () => {
    const model = imported(fullGraph());
    const moved = { ...model, nodes: model.nodes.map((n) => ({ ...n, position: { x: n.position.x + 0.4, y: n.position.y - 0.6 } })) };
    assert.deepStrictEqual(modelToGraph(moved).nodes.prompt?.ui, { x: 320, y: -41 });
  });
});

describe('inserting (paste, duplicate)', () => {
  it('renames colliding ids, follows renames in links, offsets positions and drops outside links', () => {
    const model = imported(fullGraph());
    const part = subModel(model, new Set(['eps', 'sample', 'x_t']));
    assert.equal(part.links.length, 2);
    const out = remapForInsert(part, new Set(model.nodes.map((n) => n.id)), { x: 40, y: 40 });
    const ids = out.nodes.map((n) => n.id);
    assert.deepStrictEqual(ids, ['noise_latent_1', 'predict_noise_1', 'ddim_step_1']);
    const sample = out.nodes.find((n) => n.type === 'DDIMStep');
    const eps = out.nodes.find((n) => n.type === 'PredictNoise');
    assert.ok(out.links.some((l) => l.source === eps?.id && l.target === sample?.id && l.targetInput === 'noise'));
    assert.deepStrictEqual(sample?.position, { x: 1040, y: 40 });
    assert.deepStrictEqual(sample?.params, { steps: 3, eta: 0.25, seed: 7 });
  });

  it('keeps ids that are free', () => {
    const model = imported(fullGraph());
    const out = remapForInsert(model, new Set(), { x: 0, y: 0 });
    assert.deepStrictEqual(out.nodes.map((n) => n.id), model.nodes.map((n) => n.id));
    assert.deepStrictEqual(out.links, model.links);
  });

  it('makes fresh ids valid in graph v1', () => {
    assert.equal(freshNodeId('EncodePrompt', new Set()), 'encode_prompt_1');
    assert.equal(freshNodeId('EncodePrompt', new Set(['encode_prompt_1'])), 'encode_prompt_2');
    assert.equal(freshNodeId('DDIMStep', new Set()), 'ddim_step_1');
    assert.match(freshNodeId('Ünïcode Node!', new Set()), /^[A-Za-z0-9_.:-]+$/);
  });
});

describe('graphToModel', () => {
  it('accepts an already parsed graph', () => {
    const model = graphToModel(fullGraph(), lookup);
    assert.equal(model.meta?.name, 'round trip');
    assert.equal(model.nodes.length, 8);
  });
});

describe('graph v2 fields ⇄ editor model', () => {
  it('round-trips node modes, titles, colours, collapse, groups and notes exactly', () => {
    const g = fullGraph();
    g.nodes.eps = { ...g.nodes.eps!, mode: 'bypass', ui: { x: 660, y: 0, title: 'Guided ε', color: '#2e5e34', collapsed: true } };
    g.nodes.uncond = { ...g.nodes.uncond!, mode: 'mute' };
    g.groups = { group_1: { title: 'Prompts', color: '#3f789e', nodes: ['prompt', 'uncond'] } };
    g.notes = { note_1: { text: 'blend until t = 600', ui: { x: -200, y: 40, width: 220, height: 90 } }, note_2: { text: '', color: '#4a4432', ui: { x: 0, y: 600 } } };
    const model = graphToModel(g, lookup);
    assert.deepStrictEqual(model.nodes.find((n) => n.id === 'eps'), {
      id: 'eps', type: 'PredictNoise', params: { guidance_scale: 7.5 }, position: { x: 660, y: 0 },
      mode: 'bypass', title: 'Guided ε', color: '#2e5e34', collapsed: true,
    });
    assert.deepStrictEqual(modelToGraph(model), g);
  });

  it('opens a v1 file with none of them and writes version 2', () => {
    const v1 = { ...fullGraph(), version: 1 };
    const res = importGraph(v1, lookup);
    assert.ok(res.ok);
    const out = modelToGraph(res.model);
    assert.equal(out.version, 2);
    assert.equal(out.groups, undefined);
    assert.equal(out.notes, undefined);
    assert.ok(Object.values(out.nodes).every((n) => n.mode === undefined));
  });

  it('drops group members that are not nodes of the graph', () => {
    const g = { ...fullGraph(), groups: { g: { title: 'G', nodes: ['model', 'gone'] } } };
    assert.deepStrictEqual(graphToModel(g, lookup).groups, [{ id: 'g', title: 'G', nodes: ['model'] }]);
  });
});
