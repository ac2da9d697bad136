import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import path from 'node:path';
import sharp from 'sharp';
import type { RunningServer } from '../../server/http/start.js';
import { api, makeSandbox, startIn, txt2img, type Sandbox } from './helpers.js';

interface ErrorBody { error: string; message: string; issues?: { node: string | null; field: string | null; code: string }[] }

/** A request with the path exactly as written: fetch would normalise "..". */
function rawGet(base: string, rawPath: string): Promise<{ status: number; body: string }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: rawPath, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('HTTP errors, validation and path safety', () => {
  let sandbox: Sandbox;
  let server: RunningServer;

  before(async () => {
    sandbox = await makeSandbox();
    const graphsDir = path.join(sandbox.root, 'graphs');
    await mkdir(graphsDir, { recursive: true });
    await writeFile(path.join(graphsDir, 'txt2img.json'), JSON.stringify({ ...txt2img(), meta: { name: 'txt2img test' } }));
    await writeFile(path.join(graphsDir, 'broken.json'), '{ not json');
    await mkdir(sandbox.outputRoot, { recursive: true });
    await writeFile(path.join(sandbox.root, 'secret.png'), 'outside the output root');
    await writeFile(path.join(sandbox.root, 'secret.npy'), 'outside the output root');
    await symlink(path.join(sandbox.root, 'secret.png'), path.join(sandbox.outputRoot, 'link.png'));
    server = await startIn(sandbox, { pngLimit: '64kb', bodyLimit: '256kb' });
  });

  after(async () => {
    await server?.close();
    await sandbox?.remove();
  });

  it('rejects an invalid graph with every issue, per node, and queues nothing', async () => {
    const g = txt2img() as { nodes: Record<string, { type: string; params?: Record<string, unknown>; inputs?: Record<string, unknown> }> };
    g.nodes.sample!.params = { steps: 0 };
    g.nodes.decode!.inputs = {};
    g.nodes.extra = { type: 'NoSuchNode' };
    const res = await api<ErrorBody>(server.url, '/api/runs', { body: { graph: g } });
    assert.equal(res.status, 400);
    assert.equal(res.body.error, 'invalid_graph');
    const where = res.body.issues!.map((i) => `${i.node}:${i.code}`).sort();
    assert.deepEqual(where, ['decode:missing_input', 'decode:missing_input', 'extra:unknown_node_type', 'sample:param_range']);
    const runs = await api<{ runs: unknown[] }>(server.url, '/api/runs');
    assert.deepEqual(runs.body.runs, []);
  });

  it('rejects a LoadModel path that escapes the models root before running anything', async () => {
    for (const bad of ['../x', '/etc', 'tiny/../../x']) {
      const res = await api<ErrorBody>(server.url, '/api/runs', { body: { graph: txt2img({ model: bad }) } });
      assert.equal(res.status, 400, bad);
      const issue = res.body.issues!.find((i) => i.node === 'model');
      assert.equal(issue?.code, 'path_escape', bad);
      assert.equal(issue?.field, 'params.path');
    }
  });

  it('answers malformed bodies with clear 4xx errors', async () => {
    const broken = await api<ErrorBody>(server.url, '/api/runs', { raw: '{"graph": ', headers: { 'content-type': 'application/json' } });
    assert.equal(broken.status, 400);
    assert.equal(broken.body.error, 'malformed_json');
    assert.match(broken.body.message, /not valid JSON/);

    const text = await api<ErrorBody>(server.url, '/api/runs', { raw: 'hello', headers: { 'content-type': 'text/plain' } });
    assert.equal(text.status, 415);

    const noGraph = await api<ErrorBody>(server.url, '/api/runs', { body: {} });
    assert.equal(noGraph.status, 400);
    assert.match(noGraph.body.message, /graph/);

    const extra = await api<ErrorBody>(server.url, '/api/runs', { body: { graph: txt2img(), priority: 1 } });
    assert.equal(extra.status, 400);
    assert.match(extra.body.message, /priority/);

    const badClient = await api<ErrorBody>(server.url, '/api/runs', { body: { graph: txt2img(), client_id: 'no spaces!' } });
    assert.equal(badClient.status, 400);

    const array = await api<ErrorBody>(server.url, '/api/runs', { body: [1, 2] });
    assert.equal(array.status, 400);

    const huge = await api<ErrorBody>(server.url, '/api/runs', { body: { graph: txt2img({ prompt: 'x'.repeat(300_000) }) } });
    assert.equal(huge.status, 413);
    assert.equal(huge.body.error, 'body_too_large');

    const future = await api<ErrorBody>(server.url, '/api/runs', { body: { graph: { ...txt2img(), version: 9 } } });
    assert.equal(future.status, 400);
    assert.equal(future.body.issues?.[0]?.code, 'future_version');
  });

  it('answers unknown API routes and runs with JSON 404s', async () => {
    const route = await api<ErrorBody>(server.url, '/api/nope');
    assert.equal(route.status, 404);
    assert.equal(route.body.error, 'not_found');
    const run = await api<ErrorBody>(server.url, '/api/runs/does-not-exist');
    assert.equal(run.status, 404);
    const del = await api<ErrorBody>(server.url, '/api/runs/does-not-exist', { method: 'DELETE' });
    assert.equal(del.status, 404);
    const page = await api<ErrorBody>(server.url, '/api/runs?before=does-not-exist');
    assert.equal(page.status, 400);
  });

  it('serves output files only from inside the output root', async () => {
    for (const name of ['..%2Fsecret.png', '%2E%2E%2Fsecret.png', '..%5Csecret.png', '.hidden.png', 'secret.txt', 'a%00.png']) {
      const res = await api<ErrorBody>(server.url, `/api/images/${name}`);
      assert.equal(res.status, 400, name);
      assert.equal(res.body.error, 'bad_name', name);
    }
    for (const name of ['..%2Fsecret.npy', 'x.png']) {
      const res = await api<ErrorBody>(server.url, `/api/latents/${name}`);
      assert.equal(res.status, 400, name);
    }
    const raw = await rawGet(server.url, '/api/images/../../secret.png');
    assert.equal(raw.status, 404);
    assert.doesNotMatch(raw.body, /outside the output root/);

    const link = await api<ErrorBody>(server.url, '/api/images/link.png');
    assert.equal(link.status, 404, 'a symlink out of the root is not followed');
    const missing = await api<ErrorBody>(server.url, '/api/images/missing.png');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error, 'not_found');
  });

  it('lists and serves bundled graphs, skipping broken ones', async () => {
    const list = await api<{ graphs: { name: string; meta: { name?: string }; nodes: number }[] }>(server.url, '/api/graphs');
    assert.deepEqual(list.body.graphs, [{ name: 'txt2img', meta: { name: 'txt2img test' }, nodes: 8 }]);
    const one = await api(server.url, '/api/graphs/txt2img');
    assert.deepEqual(one.body, { ...txt2img(), meta: { name: 'txt2img test' } });
    assert.equal((await api(server.url, '/api/graphs/missing')).status, 404);
    assert.equal((await api(server.url, '/api/graphs/..%2Fsecret')).status, 400);
  });

  it('reads graphs from PNGs, refusing what is not one', async () => {
    const plain = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#ff0000' } }).png().toBuffer();
    const none = await api<ErrorBody>(server.url, '/api/graph-from-png', { raw: plain, headers: { 'content-type': 'image/png' } });
    assert.equal(none.status, 422);
    assert.equal(none.body.error, 'no_graph');

    const notPng = await api<ErrorBody>(server.url, '/api/graph-from-png', { raw: 'GIF89a....', headers: { 'content-type': 'image/png' } });
    assert.equal(notPng.status, 400);
    assert.equal(notPng.body.error, 'not_png');

    const wrongType = await api<ErrorBody>(server.url, '/api/graph-from-png', { raw: plain, headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(wrongType.status, 415);

    const big = Buffer.concat([plain.subarray(0, 8), Buffer.alloc(100_000)]);
    const tooBig = await api<ErrorBody>(server.url, '/api/graph-from-png', { raw: big, headers: { 'content-type': 'image/png' } });
    assert.equal(tooBig.status, 413);

    const truncated = await api<ErrorBody>(server.url, '/api/graph-from-png', { raw: plain.subarray(0, 20), headers: { 'content-type': 'image/png' } });
    assert.equal(truncated.status, 422);
  });

  it('serves a placeholder page at / when the editor is not built', async () => {
    const res = await fetch(server.url + '/');
    assert.equal(res.status, 200);
    assert.match(await res.text(), /FuseGraph server is running/);
  });
});
