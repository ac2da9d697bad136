import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { importGraph } from '../../client/editor/graph-convert.js';
import type { Graph } from '../../nodes/graph-format.js';
import { GRAPH_VERSION, parseGraph } from '../../nodes/graph-format.js';
import { LATEST_GRAPH_VERSION, migrateGraph } from '../../nodes/graph-migrations.js';
import { resolveModes } from '../../nodes/graph-modes.js';
import { getNodeDef } from '../../nodes/index.js';
import { validateGraph } from '../../server/engine/validate.js';
import { encodePngWithMetadata, readGraphFromPng } from '../../server/sd/png-meta.js';
import { RunStore } from '../../server/services/run-store.js';
import { REPO_ROOT, bundledGraph } from '../helpers/graphs.js';
import { api, isTerminal, makeSandbox, startIn, WsClient, type Sandbox } from '../server/helpers.js';

const V1_TEXT = readFileSync(path.join(REPO_ROOT, 'test', 'fixtures', 'graphs', 'v1-txt2img.json'), 'utf8');
const v1 = (): Record<string, unknown> & { version: number; nodes: Record<string, unknown> } => JSON.parse(V1_TEXT);

describe('graph format versions', () => {
  it('the migration chain ends at the version this FuseGraph writes', () => {
    assert.equal(LATEST_GRAPH_VERSION, GRAPH_VERSION);
  });

  it('v1 → v2 changes the version and nothing else', () => {
    const raw = v1();
    assert.equal(raw.version, 1);
    const migrated = migrateGraph(raw);
    assert.ok('value' in migrated);
    assert.deepEqual(migrated.value, { ...raw, version: 2 });
    const parsed = parseGraph(raw);
    assert.deepEqual(parsed.issues, []);
    assert.equal(parsed.graph?.version, 2);
    // Migrating a current graph is the identity.
    assert.deepEqual(parseGraph(parsed.graph).graph, parsed.graph);
  });

  it('every bundled v1 graph loads and validates', () => {
    for (const name of ['txt2img', 'magicfusion-cross-domain', 'demo-fusion']) {
      const g = bundledGraph(name) as unknown as { version: number };
      assert.equal(g.version, 1, `${name} is kept in v1 on purpose`);
      assert.deepEqual(validateGraph(g).issues, [], name);
    }
  });

  it('refuses a newer version with a message saying so, and reports a broken v1 graph with its field paths', () => {
    const future = parseGraph({ ...v1(), version: GRAPH_VERSION + 1 });
    assert.equal(future.issues[0]?.code, 'future_version');
    assert.match(future.issues[0]!.message, /newer than this FuseGraph understands/);
    const broken = v1();
    (broken.nodes.sample as Record<string, unknown>).colour = 'red';
    const issues = parseGraph(broken).issues;
    assert.ok(issues.some((i) => i.node === 'sample' && i.message.includes('"colour"')), JSON.stringify(issues));
  });

  it('v2 carries groups, notes, titles, colours and modes; v1 does not know them', () => {
    const g = { ...v1(), version: 2 } as unknown as Graph;
    const withExtras: Graph = {
      ...g,
      nodes: { ...g.nodes, sample: { ...g.nodes.sample!, ui: { x: 0, y: 0, title: 'Sampler', color: '#335577', collapsed: true } } },
      groups: { g1: { title: 'Sampling', color: '#224466', nodes: ['sample', 'eps'] } },
      notes: { n1: { text: 'Guidance 7.5 is the diffusers default.', ui: { x: 10, y: 20, width: 200 } } },
    };
    assert.deepEqual(validateGraph(withExtras).issues, []);
    const asV1 = parseGraph({ ...withExtras, version: 1 });
    assert.deepEqual(asV1.issues, [], 'a v1 file with v2 fields is migrated, not refused');
    const badColour = parseGraph({ ...withExtras, groups: { g1: { title: 'x', color: 'red', nodes: [] } } });
    assert.ok(badColour.issues.some((i) => i.field === 'groups.g1.color'), JSON.stringify(badColour.issues));
  });
});

describe('node modes (bypass, mute)', () => {
  const fused = (): Graph => bundledGraph('magicfusion-cross-domain');

  it('a bypassed BlendNoise passes its first NOISE input through', () => {
    const g = fused();
    g.nodes.snb!.mode = 'bypass';
    const { graph, issues } = resolveModes(g, getNodeDef);
    assert.deepEqual(issues, []);
    assert.equal(graph.nodes.snb, undefined);
    assert.deepEqual(graph.nodes.schedule!.inputs!.before, g.nodes.snb!.inputs!.a);
  });

  it('a muted output node is left out; a muted producer names each consumer that needed it', () => {
    const g = fused();
    g.nodes.save_expert!.mode = 'mute';
    assert.deepEqual(validateGraph(g).issues, []);
    g.nodes.eps_other!.mode = 'mute';
    const issues = validateGraph(g).issues;
    const named = issues.map((i) => `${i.node}.${i.field}:${i.code}`).sort();
    assert.ok(named.includes('saliency_other.inputs.noise:muted_input'), named.join(' '));
    assert.ok(named.includes('snb.inputs.b:muted_input'), named.join(' '));
  });

  it('bypassing a node with no input of its output type is an error on its consumer', () => {
    const g = fused();
    g.nodes.saliency_other!.mode = 'bypass';
    const issues = validateGraph(g).issues;
    assert.ok(issues.some((i) => i.node === 'snb' && i.field === 'inputs.saliency_b' && i.code === 'bypass_type'), JSON.stringify(issues));
  });
});

const run = promisify(execFile);

describe('a v1 graph enters through every door', () => {
  let sandbox: Sandbox;
  before(async () => {
    sandbox = await makeSandbox();
  });
  after(async () => {
    await sandbox?.remove();
  });

  it('file: the CLI validates and runs a v1 graph file', async () => {
    const file = path.join(sandbox.root, 'v1.json');
    await writeFile(file, V1_TEXT);
    const bin = path.join(REPO_ROOT, 'bin', 'fusegraph.js');
    const args = ['--models', sandbox.modelsRoot, '--out', sandbox.outputRoot];
    const env = { ...process.env, FUSEGRAPH_NO_WEBGPU: '1' };
    // validate makes run's checks, the model folders under --models included.
    await run(process.execPath, [bin, 'validate', file, '--models', sandbox.modelsRoot], { env });
    const { stdout } = await run(process.execPath, [bin, 'run', file, ...args], { env });
    assert.match(stdout, /txt2img_\d+\.png/);
  });

  it('PNG chunk: a v1 graph embedded in a PNG comes out as v2', async () => {
    const png = await encodePngWithMetadata(new Uint8Array(4 * 4 * 3), 4, 4, { graph: v1() });
    assert.equal(readGraphFromPng(png)?.version, 2);
  });

  it('browser storage and drops: the editor imports a v1 graph', () => {
    const res = importGraph(v1(), getNodeDef);
    assert.ok(res.ok, JSON.stringify(res));
  });

  it('HTTP and stored queue rows: a v1 graph is accepted, and a v1 row written by an older server runs after a restart', async () => {
    const server = await startIn(sandbox);
    try {
      const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: v1() } });
      assert.equal(post.status, 202, JSON.stringify(post.body));
      const ws = await WsClient.connect(server.url);
      ws.send({ type: 'subscribe', runs: [post.body.run_id] });
      const end = await ws.waitFor(isTerminal(post.body.run_id), 60_000);
      assert.equal(end.type, 'done', JSON.stringify(end));
      await ws.close();
    } finally {
      await server.close();
    }
    // An older server left a queued v1 row behind.
    const store = new RunStore(sandbox.dataDir);
    store.insert({ id: 'old-v1-row', graph: v1() as unknown as Graph, client_id: null, created_at: Date.now() });
    store.close();
    const second = await startIn(sandbox);
    try {
      const ws = await WsClient.connect(second.url);
      ws.send({ type: 'subscribe', runs: ['old-v1-row'] });
      const end = await ws.waitFor(isTerminal('old-v1-row'), 60_000);
      assert.equal(end.type, 'done', JSON.stringify(end));
      const detail = await api<{ graph: { version: number } }>(second.url, '/api/runs/old-v1-row');
      assert.equal(detail.body.graph.version, 2);
      await ws.close();
    } finally {
      await second.close();
    }
  });
});
