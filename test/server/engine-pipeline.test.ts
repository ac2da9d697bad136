import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Graph, GraphIssue } from '../../nodes/graph-format.js';
import type { RunningServer } from '../../server/http/start.js';
import { readPngText } from '../../server/sd/png-meta.js';
import { api, gate, gateWait, isTerminal, serverPerSuite, txt2img, WsClient, type Sandbox } from './helpers.js';

interface Submitted { run_id: string; position: number }

/**
 * Issue 25: one engine pipeline. What is stored and written is the graph as submitted; validate says what run does,
 * on every entry point; the Sampler node steps through the same loop (and step gate) as DDIMStep.
 */
describe('one engine pipeline (issue 25), tiny real models', () => {
  let server: RunningServer;
  let sandbox: Sandbox;
  serverPerSuite((s) => ({ server, sandbox } = s));

  /** txt2img with a bypassed BlendNoise before the sampler, a muted second SaveImage, a group, a note and ui. */
  function withModes(): Graph {
    const g = txt2img({ steps: 2, seed: 5 });
    g.nodes.blend = { type: 'BlendNoise', mode: 'bypass', inputs: { a: { node: 'eps', output: 'noise' } }, ui: { x: 10, y: 20, title: 'SNB (off)' } };
    g.nodes.sample!.inputs!.noise = { node: 'blend', output: 'noise' };
    g.nodes.save_muted = { type: 'SaveImage', mode: 'mute', params: { prefix: 'never' }, inputs: { image: { node: 'decode', output: 'image' } } };
    g.groups = { g1: { title: 'Fusion', nodes: ['blend', 'eps'] } };
    g.notes = { n1: { text: 'blend is bypassed', ui: { x: 0, y: 0 } } };
    return g;
  }

  it('keeps bypassed and muted nodes, groups and notes in the stored run, GET /api/runs/:id and the PNG', async () => {
    const graph = withModes();
    const ws = await WsClient.connect(server.url, '?client_id=modes');
    try {
      const post = await api<Submitted>(server.url, '/api/runs', { body: { graph, client_id: 'modes' } });
      assert.equal(post.status, 202, JSON.stringify(post.body));
      const end = await ws.waitFor(isTerminal(post.body.run_id), 60_000);
      assert.equal(end.type, 'done', JSON.stringify(end));
      const detail = await api<{ graph: Graph; outputs: { name: string }[]; node_states: Record<string, string> }>(server.url, `/api/runs/${post.body.run_id}`);
      assert.deepEqual(detail.body.graph, graph, 'the run shows the graph as submitted');
      assert.equal(detail.body.node_states.blend, undefined, 'the bypassed node did not run');
      assert.equal(detail.body.outputs.length, 1, 'the muted SaveImage wrote nothing');
      const png = await readFile(path.join(sandbox.outputRoot, detail.body.outputs[0]!.name));
      const meta = JSON.parse(readPngText(png).get('fusegraph')!) as { graph: Graph; params: Record<string, unknown> };
      assert.deepEqual(meta.graph, graph, 'the PNG carries the graph as submitted');
      assert.equal(meta.params.blend, undefined, 'params are what ran');
      assert.deepEqual(meta.params.sample, { steps: 2, eta: 0, seed: 0 });
    } finally {
      await ws.close();
    }
  });

  /** A graph run refuses at submit for the model folders' sake, not for its shape: two issues on two nodes. */
  function refusedByAdmission(): Graph {
    const g = txt2img({ size: 64 });
    g.nodes.other = { type: 'LoadModel', params: { path: 'no-such-model', provider: 'cpu' } };
    g.nodes.neg!.inputs!.model = { node: 'other', output: 'model' };
    g.nodes.sample!.params = { steps: 1000 };
    return g;
  }

  it('validate over HTTP and WS gives every issue run gives, with the same codes; a graph it accepts has none', async () => {
    const graph = refusedByAdmission();
    const run = await api<{ error: string; issues: GraphIssue[] }>(server.url, '/api/runs', { body: { graph } });
    assert.equal(run.status, 400);
    const key = (i: GraphIssue): string => `${i.node}|${i.field}|${i.code}`;
    assert.deepEqual(run.body.issues.map(key).sort(), ['other|params.path|model_unavailable', 'sample|params.steps|param_range']);
    assert.doesNotMatch(JSON.stringify(run.body), new RegExp(sandbox.root.replaceAll('/', '\\/')), 'no server path');

    const http = await api<{ issues: GraphIssue[] }>(server.url, '/api/validate', { body: { graph } });
    assert.equal(http.status, 200);
    assert.deepEqual(http.body.issues, run.body.issues);

    const ws = await WsClient.connect(server.url);
    try {
      ws.send({ type: 'validate', graph, ref: 'v1' });
      const validated = await ws.waitFor((f) => f.type === 'validated' && f.ref === 'v1');
      assert.deepEqual(validated.issues, run.body.issues);
      ws.send({ type: 'validate', graph: txt2img(), ref: 'v2' });
      assert.deepEqual((await ws.waitFor((f) => f.type === 'validated' && f.ref === 'v2')).issues, []);
    } finally {
      await ws.close();
    }
    assert.deepEqual((await api<{ issues: GraphIssue[] }>(server.url, '/api/validate', { body: { graph: txt2img() } })).body.issues, []);
  });

  it('the Sampler node passes the step gate at every model call, so it pauses and cancels within one call as DDIMStep does', async () => {
    const graph = txt2img({ seed: 7 });
    graph.nodes.sample = { ...graph.nodes.sample!, type: 'Sampler', params: { sampler: 'euler', steps: 6 } };
    const ws = await WsClient.connect(server.url, '?client_id=sampler');
    try {
      await gate(server.url, { hold: true, release_steps: 2 });
      const post = await api<Submitted>(server.url, '/api/runs', { body: { graph, client_id: 'sampler' } });
      assert.equal(post.status, 202, JSON.stringify(post.body));
      const held = await gateWait(server.url, { waiting: 1, timeout_ms: 60_000 });
      assert.deepEqual(held.waiting, [{ node: 'sample', step: 3, steps: 6 }]);
      const del = await api(server.url, `/api/runs/${post.body.run_id}`, { method: 'DELETE' });
      assert.equal(del.status, 202);
      const end = await ws.waitFor(isTerminal(post.body.run_id), 30_000);
      assert.equal(end.type, 'cancelled');
      const steps = ws.forRun(post.body.run_id).filter((f) => f.type === 'progress').map((f) => f.step as number);
      // Progress frames are throttled (a later one may replace an earlier), but none comes past the held call.
      assert.equal(steps.at(-1), 2, 'stopped where the gate held it');
      assert.ok(steps.every((s) => s <= 2), steps.join(','));
    } finally {
      await gate(server.url, { hold: false });
      await ws.close();
    }
  });
});
