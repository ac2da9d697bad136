import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Graph } from '../../nodes/graph-format.js';
import { GRAPH_LIMITS } from '../../nodes/graph-format.js';
import type { RunningServer } from '../../server/http/start.js';
import { api, serverPerSuite, isTerminal, txt2img, WsClient } from './helpers.js';

interface Issue { node: string | null; field: string | null; code: string; message: string }
interface Refused { error: string; issues: Issue[] }

/** txt2img whose sampling is `length` DDIMStep nodes of one step each, each starting from the previous one's latent. */
function samplerChain(length: number): Graph {
  const g = txt2img();
  const link = (node: string, output: string) => ({ node, output });
  for (let i = 1; i < length; i++) {
    g.nodes[`s${i}`] = { type: 'DDIMStep', params: { steps: 1 }, inputs: { model: link('model', 'model'), noise: link('eps', 'noise'), latent: link(i === 1 ? 'sample' : `s${i - 1}`, 'latent') } };
  }
  g.nodes.sample!.params = { steps: 1 };
  g.nodes.decode!.inputs!.latent = link(`s${length - 1}`, 'latent');
  return g;
}

describe('graph size limits and own-property lookups (issue 14, defects 3 and 4)', () => {
  let server: RunningServer;
  serverPerSuite((s) => ({ server } = s));

  const submitRaw = (raw: string) => api<Refused>(server.url, '/api/runs', { raw, headers: { 'content-type': 'application/json' } });
  const submit = (graph: unknown) => api<Refused>(server.url, '/api/runs', { body: { graph } });

  it('refuses a 9,000-node linked chain (590 KB) with 400, naming the limit, instead of a 500', async () => {
    const nodes: Record<string, unknown> = { n0: { type: 'LoadModel', params: { path: 'tiny' } } };
    for (let i = 1; i < 9000; i++) nodes[`n${i}`] = { type: 'NoiseLatent', inputs: { model: { node: `n${i - 1}`, output: 'model' } } };
    const body = JSON.stringify({ graph: { format: 'fusegraph', version: 1, nodes } });
    assert.ok(body.length > 500_000);
    const res = await submitRaw(body);
    assert.equal(res.status, 400);
    assert.equal(res.body.error, 'invalid_graph');
    assert.deepEqual(res.body.issues.map((i) => [i.field, i.code]), [['nodes', 'format']]);
    assert.match(JSON.stringify(res.body.issues[0]), new RegExp(`at most ${GRAPH_LIMITS.nodes}`));
  });

  it('refuses a cycle through every node of a full-size graph with the cycle named, without recursion', async () => {
    const n = GRAPH_LIMITS.nodes;
    const nodes: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) nodes[`b${i}`] = { type: 'SwitchAtTimestep', inputs: { before: { node: `b${(i + 1) % n}`, output: 'noise' }, after: { node: `b${(i + 1) % n}`, output: 'noise' } } };
    const res = await submit({ format: 'fusegraph', version: 1, nodes });
    assert.equal(res.status, 400);
    const cycles = res.body.issues.filter((i) => i.code === 'cycle');
    assert.equal(cycles.length, 1);
    assert.ok(cycles[0]!.node?.startsWith('b'));
  });

  it(`runs a valid chain of ${GRAPH_LIMITS.nodes} nodes (DDIMStep after DDIMStep) to the end`, async () => {
    const g = samplerChain(GRAPH_LIMITS.nodes - Object.keys(txt2img().nodes).length + 1);
    assert.equal(Object.keys(g.nodes).length, GRAPH_LIMITS.nodes);
    const ws = await WsClient.connect(server.url, '?client_id=chain');
    try {
      const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: g, client_id: 'chain' } });
      assert.equal(post.status, 202);
      assert.equal((await ws.waitFor(isTerminal(post.body.run_id), 120_000)).type, 'done');
    } finally {
      await ws.close();
    }
  });

  for (const name of ['toString', 'constructor', 'valueOf', 'hasOwnProperty']) {
    it(`refuses an input named "${name}" with the node and field`, async () => {
      const g = txt2img();
      g.nodes.decode!.inputs![name] = { node: 'model', output: 'model' };
      const res = await submit(g);
      assert.equal(res.status, 400);
      assert.deepEqual(res.body.issues.map((i) => [i.node, i.field, i.code]), [['decode', `inputs.${name}`, 'unknown_input']]);
    });
  }

  it('refuses a param named "constructor"', async () => {
    const g = txt2img();
    Object.defineProperty(g.nodes.noise!.params!, 'constructor', { value: 3, enumerable: true });
    const res = await submit(g);
    assert.equal(res.status, 400);
    assert.deepEqual(res.body.issues.map((i) => [i.node, i.field, i.code]), [['noise', 'params.constructor', 'unknown_param']]);
  });

  for (const target of ['constructor', '__proto__', 'toString']) {
    it(`refuses a link to node "${target}" as a missing node`, async () => {
      const g = txt2img();
      g.nodes.decode!.inputs!.model = { node: target, output: 'model' };
      const res = await submit(g);
      assert.equal(res.status, 400);
      assert.deepEqual(res.body.issues.map((i) => [i.node, i.field, i.code]), [['decode', 'inputs.model', 'missing_link_node']]);
    });
  }

  it('refuses "__proto__" as a node id, param name or input name instead of dropping it', async () => {
    const graph = JSON.stringify(txt2img()).replace('"nodes":{', '"nodes":{"__proto__":{"type":"LoadModel","params":{"path":"tiny"}},');
    const byId = await submitRaw(`{"graph":${graph}}`);
    assert.equal(byId.status, 400);
    assert.deepEqual(byId.body.issues.map((i) => [i.node, i.field]), [[null, 'nodes.__proto__']]);

    const inParams = JSON.stringify(txt2img()).replace('"params":{"seed"', '"params":{"__proto__":{"x":1},"seed"');
    const byParam = await submitRaw(`{"graph":${inParams}}`);
    assert.equal(byParam.status, 400);
    assert.ok(byParam.body.issues.some((i) => i.node === 'noise' && i.field === 'params.__proto__'), JSON.stringify(byParam.body.issues));

    const inInputs = JSON.stringify(txt2img()).replace('"inputs":{"image"', '"inputs":{"__proto__":{"node":"model","output":"model"},"image"');
    const byInput = await submitRaw(`{"graph":${inInputs}}`);
    assert.equal(byInput.status, 400);
    assert.ok(byInput.body.issues.some((i) => i.node === 'save' && i.field === 'inputs.__proto__'), JSON.stringify(byInput.body.issues));
  });

  it('refuses over-long names and string values with the field named', async () => {
    const g = txt2img();
    g.nodes.pos!.params!.text = 'x'.repeat(GRAPH_LIMITS.stringValue + 1);
    const res = await submit(g);
    assert.equal(res.status, 400);
    assert.ok(res.body.issues.some((i) => i.node === 'pos' && i.field === 'params.text'), JSON.stringify(res.body.issues));
  });

  it('refuses a LoadModel without a path (issue 14, defect 6)', async () => {
    const g = txt2img();
    g.nodes.model!.params = { provider: 'cpu' };
    const res = await submit(g);
    assert.equal(res.status, 400);
    assert.deepEqual(res.body.issues.map((i) => [i.node, i.field, i.code]), [['model', 'params.path', 'param_range']]);
  });
});
