import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Graph } from '../../nodes/graph-format.js';
import { redactPaths } from '../../server/engine/redact.js';
import type { RunningServer } from '../../server/http/start.js';
import { api, brokenModel, isTerminal, makeSandbox, startIn, txt2img, WsClient, type Sandbox } from './helpers.js';

/** txt2img whose sampled latent also goes to SaveLatent(filename), or whose start comes from LoadLatent(path). */
function withLatentIo(o: { save?: string; load?: string }): Graph {
  const g = txt2img();
  if (o.save) g.nodes.keep = { type: 'SaveLatent', params: { filename: o.save }, inputs: { latent: { node: 'sample', output: 'latent' } } };
  if (o.load) {
    g.nodes.start = { type: 'LoadLatent', params: { path: o.load } };
    g.nodes.sample!.inputs!.latent = { node: 'start', output: 'latent' };
  }
  return g;
}

describe('errors sent to clients', () => {
  let sandbox: Sandbox;
  let server: RunningServer;
  const logged: unknown[] = [];

  before(async () => {
    sandbox = await makeSandbox();
    await brokenModel(sandbox, 'broken');
    server = await startIn(sandbox, { log: (m, err) => logged.push(m, err) });
  });
  after(async () => {
    await server?.close();
    await sandbox?.remove();
  });

  const leaks = (text: string): string[] =>
    [sandbox.root, '    at ', '.ts:', 'node_modules'].filter((needle) => text.includes(needle));

  it('carry no server path when admission refuses a missing model folder', async () => {
    const post = await api<{ issues: { node: string; code: string; message: string }[] }>(server.url, '/api/runs', { body: { graph: txt2img({ model: 'nowhere' }) } });
    assert.equal(post.status, 400);
    assert.deepEqual(post.body.issues.map((i) => [i.node, i.code]), [['model', 'model_unavailable']]);
    assert.deepEqual(leaks(JSON.stringify(post.body)), [], JSON.stringify(post.body));
    assert.match(post.body.issues[0]!.message, /models\/nowhere/);
  });

  for (const [what, graph, node] of [
    ['a failing SaveLatent (its file name is a folder)', withLatentIo({ save: 'taken.npy' }), 'keep'],
    ['a LoadLatent of a missing file', withLatentIo({ load: 'missing.npy' }), 'start'],
    // A missing folder is refused at submit (admission); one whose UNet is no ONNX file fails when it loads.
    ['a LoadModel of a folder whose UNet is not ONNX', txt2img({ model: 'broken' }), 'model'],
  ] as const) {
    it(`carry no stack trace or server path: ${what}`, async () => {
      await mkdir(path.join(sandbox.outputRoot, 'taken.npy'), { recursive: true });
      const ws = await WsClient.connect(server.url, '?client_id=redact');
      try {
        const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph, client_id: 'redact' } });
        assert.equal(post.status, 202);
        const end = await ws.waitFor(isTerminal(post.body.run_id), 60_000);
        assert.equal(end.type, 'error');
        assert.equal(end.node, node);
        assert.equal(end.details, undefined);
        const detail = await api(server.url, `/api/runs/${post.body.run_id}`);
        const sent = JSON.stringify(end) + JSON.stringify(detail.body.error);
        assert.deepEqual(leaks(sent), [], sent);
        assert.match(String(end.message), new RegExp(`node "${node}"`));
      } finally {
        await ws.close();
      }
    });
  }

  it('keeps the full exception in the server log', () => {
    const causes = logged.filter((x): x is Error => x instanceof Error);
    assert.ok(causes.some((e) => typeof e.stack === 'string' && e.stack.includes('    at ')), 'a stack reached the log');
  });
});

describe('redactPaths', () => {
  it('makes root paths relative and cuts other absolute paths to their last segment', () => {
    const roots = { models: '/srv/fg/models', input: '/srv/fg/in', output: '/srv/fg/models/out' };
    assert.equal(redactPaths('model folder not found: /srv/fg/models/x', roots), 'model folder not found: models/x');
    assert.equal(redactPaths("EISDIR: illegal operation, open '/srv/fg/models/out/a.npy'", roots), "EISDIR: illegal operation, open 'output/a.npy'");
    assert.equal(redactPaths('failed in /usr/lib/node_modules/ort/bin/ort.node (code 3)', roots), 'failed in …/ort.node (code 3)');
    assert.equal(redactPaths('steps 5 / 2 of 10', roots), 'steps 5 / 2 of 10');
  });
});
