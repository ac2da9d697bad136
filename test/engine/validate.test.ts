import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Graph, GraphIssue } from '../../nodes/graph-format.js';
import { validateGraph } from '../../server/engine/validate.js';
import { bundledGraph, txt2imgGraph } from '../helpers/graphs.js';

function issuesOf(value: unknown): GraphIssue[] {
  return validateGraph(value).issues;
}

function mutate(fn: (g: Graph) => void): Graph {
  const g = structuredClone(txt2imgGraph('m'));
  fn(g);
  return g;
}

describe('validateGraph', () => {
  it('accepts every bundled graph', () => {
    for (const name of ['txt2img', 'magicfusion-cross-domain', 'magicfusion-expert-first', 'magicfusion-fine-grained', 'magicfusion-recontextualization']) {
      assert.deepEqual(issuesOf(bundledGraph(name)), [], name);
    }
  });

  it('rejects malformed JSON shapes and unknown fields, naming them', () => {
    assert.equal(issuesOf(null)[0]?.code, 'format');
    assert.ok(issuesOf({ format: 'comfy', version: 2, nodes: {} }).some((i) => i.field === 'format'));
    const extraTop = issuesOf({ ...txt2imgGraph('m'), extra: 1 });
    assert.ok(extraTop.some((i) => i.code === 'format' && i.message.includes('"extra"')), JSON.stringify(extraTop));
    const extraNode = issuesOf(mutate((g) => Object.assign(g.nodes.save!, { colour: 'red' })));
    assert.ok(extraNode.some((i) => i.node === 'save' && i.message.includes('"colour"')), JSON.stringify(extraNode));
  });

  it('refuses a future version with a message saying so', () => {
    const issues = issuesOf({ ...txt2imgGraph('m'), version: 3 });
    assert.equal(issues.length, 1);
    assert.equal(issues[0]!.code, 'future_version');
    assert.match(issues[0]!.message, /newer/);
  });

  it('reports an unknown node type', () => {
    const issues = issuesOf(mutate((g) => (g.nodes.save!.type = 'SaveVideo')));
    assert.ok(issues.some((i) => i.code === 'unknown_node_type' && i.node === 'save' && i.field === 'type' && i.actual === 'SaveVideo'));
  });

  it('reports a missing required input, an unknown input, a link to a missing node or output', () => {
    const issues = issuesOf(mutate((g) => {
      delete g.nodes.eps!.inputs!.negative;
      g.nodes.eps!.inputs!.extra = { node: 'pos', output: 'cond' };
      g.nodes.decode!.inputs!.latent = { node: 'ghost', output: 'latent' };
      g.nodes.sample!.inputs!.latent = { node: 'noise', output: 'lat' };
    }));
    const find = (code: string, node: string, field: string): GraphIssue | undefined => issues.find((i) => i.code === code && i.node === node && i.field === field);
    assert.ok(find('missing_input', 'eps', 'inputs.negative'));
    assert.ok(find('unknown_input', 'eps', 'inputs.extra'));
    assert.ok(find('missing_link_node', 'decode', 'inputs.latent'));
    const out = find('missing_link_output', 'sample', 'inputs.latent');
    assert.ok(out);
    assert.equal(out.expected, 'latent');
    assert.equal(out.actual, 'lat');
  });

  it('reports a socket type mismatch with expected and actual types', () => {
    const issues = issuesOf(mutate((g) => (g.nodes.sample!.inputs!.latent = { node: 'pos', output: 'cond' })));
    const mismatch = issues.find((i) => i.code === 'type_mismatch');
    assert.ok(mismatch);
    assert.equal(mismatch.node, 'sample');
    assert.equal(mismatch.field, 'inputs.latent');
    assert.equal(mismatch.expected, 'LATENT');
    assert.equal(mismatch.actual, 'CONDITIONING');
  });

  it('reports a cycle naming the nodes on it', () => {
    const g: Graph = {
      format: 'fusegraph', version: 2,
      nodes: {
        a: { type: 'SwitchAtTimestep', inputs: { before: { node: 'b', output: 'noise' }, after: { node: 'b', output: 'noise' } } },
        b: { type: 'SwitchAtTimestep', inputs: { before: { node: 'a', output: 'noise' }, after: { node: 'a', output: 'noise' } } },
        out: { type: 'SaveLatent' , inputs: {} },
      },
    };
    const cycle = issuesOf(g).find((i) => i.code === 'cycle');
    assert.ok(cycle);
    assert.match(cycle.message, /"a"/);
    assert.match(cycle.message, /"b"/);
  });

  it('reports params of the wrong type, out of range, unknown, and path escapes', () => {
    const issues = issuesOf(mutate((g) => {
      g.nodes.noise!.params = { seed: 1.5, width: 100000, height: '64', batch: 1 };
      g.nodes.eps!.params = { guidance_scale: 7.5, cfg: 2 };
      g.nodes.sample!.params = { steps: 0 };
      g.nodes.model!.params = { path: '../../etc', provider: 'tpu' };
      g.nodes.save!.params = { prefix: '../x' };
    }));
    const has = (code: string, node: string, field: string): boolean => issues.some((i) => i.code === code && i.node === node && i.field === field);
    assert.ok(has('param_type', 'noise', 'params.seed'));
    assert.ok(has('param_range', 'noise', 'params.width'));
    assert.ok(has('param_type', 'noise', 'params.height'));
    assert.ok(has('unknown_param', 'eps', 'params.cfg'));
    assert.ok(has('param_range', 'sample', 'params.steps'));
    assert.ok(has('path_escape', 'model', 'params.path'));
    assert.ok(has('param_range', 'model', 'params.provider'));
    assert.ok(has('param_range', 'save', 'params.prefix'));
    assert.equal(issuesOf(mutate((g) => (g.nodes.model!.params = { path: '/abs/path' })))[0]?.code, 'path_escape');
  });

  it('reports a graph without an output node', () => {
    const issues = issuesOf(mutate((g) => {
      delete g.nodes.save;
    }));
    assert.deepEqual(issues.map((i) => i.code), ['no_output_node']);
  });

  it('reports every problem at once', () => {
    const issues = issuesOf(mutate((g) => {
      g.nodes.save!.type = 'Nope';
      g.nodes.eps!.params = { guidance_scale: -1 };
      delete g.nodes.sample!.inputs!.noise;
    }));
    assert.deepEqual(new Set(issues.map((i) => i.code)), new Set(['unknown_node_type', 'param_range', 'missing_input', 'no_output_node']));
  });
});
