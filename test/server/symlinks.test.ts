import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cp, lstat, mkdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Graph } from '../../nodes/graph-format.js';
import type { RunningServer } from '../../server/http/start.js';
import { encodeNpy } from '../../server/sd/npy.js';
import { api, isTerminal, makeSandbox, startIn, TINY_MODEL, txt2img, WsClient, type Sandbox } from './helpers.js';

const saving = (filename: string): Graph => {
  const g = txt2img();
  g.nodes.keep = { type: 'SaveLatent', params: { filename }, inputs: { latent: { node: 'sample', output: 'latent' } } };
  return g;
};
const loading = (file: string): Graph => {
  const g = txt2img();
  g.nodes.start = { type: 'LoadLatent', params: { path: file } };
  g.nodes.sample!.inputs!.latent = { node: 'start', output: 'latent' };
  return g;
};

describe('file roots and symlinks (issue 14, defect 5)', () => {
  let sandbox: Sandbox;
  let server: RunningServer;
  let ws: WsClient;
  let outside: string;
  const latentBytes = encodeNpy(new Float32Array(4 * 8 * 8).fill(0.5), [1, 4, 8, 8]);

  before(async () => {
    sandbox = await makeSandbox();
    outside = path.join(sandbox.root, 'outside');
    await mkdir(outside, { recursive: true });
    await mkdir(sandbox.outputRoot, { recursive: true });
    const graphsDir = path.join(sandbox.root, 'graphs');
    await mkdir(graphsDir, { recursive: true });
    await writeFile(path.join(graphsDir, 'mine.json'), JSON.stringify(txt2img()));
    await writeFile(path.join(outside, 'secret.json'), JSON.stringify({ format: 'fusegraph', version: 1, meta: { name: 'SECRET' }, nodes: {} }));
    await symlink(path.join(outside, 'secret.json'), path.join(graphsDir, 'leak.json'));
    server = await startIn(sandbox);
    ws = await WsClient.connect(server.url, '?client_id=links');
  });
  after(async () => {
    await ws?.close();
    await server?.close();
    await sandbox?.remove();
  });

  const run = async (graph: Graph): Promise<{ type: string; node?: unknown; message?: unknown; field?: unknown; run_id?: string }> => {
    const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph, client_id: 'links' } });
    assert.equal(post.status, 202, JSON.stringify(post.body));
    return ws.waitFor(isTerminal(post.body.run_id), 60_000);
  };

  it('SaveLatent replaces a symlink in output/ instead of writing through it to a file outside', async () => {
    const target = path.join(outside, 'victim.npy');
    await writeFile(target, 'precious');
    await symlink(target, path.join(sandbox.outputRoot, 'through.npy'));
    assert.equal((await run(saving('through.npy'))).type, 'done');
    assert.equal(await readFile(target, 'utf8'), 'precious', 'the file outside is untouched');
    const written = await lstat(path.join(sandbox.outputRoot, 'through.npy'));
    assert.ok(written.isFile() && !written.isSymbolicLink());
  });

  it('SaveLatent through a dangling symlink creates nothing outside output/', async () => {
    const target = path.join(outside, 'created.npy');
    await symlink(target, path.join(sandbox.outputRoot, 'dangling.npy'));
    assert.equal((await run(saving('dangling.npy'))).type, 'done');
    await assert.rejects(lstat(target), { code: 'ENOENT' });
    assert.ok((await lstat(path.join(sandbox.outputRoot, 'dangling.npy'))).isFile());
  });

  it('LoadLatent refuses a symlink in input/ that leads out, naming node and field; one that stays inside works', async () => {
    await writeFile(path.join(outside, 'secret.npy'), latentBytes);
    await symlink(path.join(outside, 'secret.npy'), path.join(sandbox.inputRoot, 'secret.npy'));
    const refused = await run(loading('secret.npy'));
    assert.equal(refused.type, 'error');
    assert.equal(refused.node, 'start');
    assert.match(String(refused.message), /params\.path.*leads out of the input folder/);

    await mkdir(path.join(outside, 'dir'), { recursive: true });
    await writeFile(path.join(outside, 'dir', 'x.npy'), latentBytes);
    await symlink(path.join(outside, 'dir'), path.join(sandbox.inputRoot, 'linked-dir'));
    assert.equal((await run(loading('linked-dir/x.npy'))).type, 'error', 'a linked folder on the way counts too');

    await writeFile(path.join(sandbox.inputRoot, 'real.npy'), latentBytes);
    await symlink('real.npy', path.join(sandbox.inputRoot, 'alias.npy'));
    assert.equal((await run(loading('alias.npy'))).type, 'done');
  });

  it('GET /api/graphs does not list or serve a symlink out of graphs/', async () => {
    const list = await api<{ graphs: { name: string }[] }>(server.url, '/api/graphs');
    assert.deepEqual(list.body.graphs.map((g) => g.name), ['mine']);
    assert.equal((await api(server.url, '/api/graphs/leak')).status, 404);
  });

  it('follows a symlinked model folder (models are shared between tools; the policy in docs/api.md)', async () => {
    const shared = path.join(outside, 'shared-model');
    await cp(path.join(sandbox.modelsRoot, TINY_MODEL), shared, { recursive: true });
    await symlink(shared, path.join(sandbox.modelsRoot, 'linked'));
    assert.equal(await readlink(path.join(sandbox.modelsRoot, 'linked')), shared);
    assert.equal((await run(txt2img({ model: 'linked' }))).type, 'done');
  });
});
