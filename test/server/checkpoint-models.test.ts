/**
 * Checkpoint files through the server, as the editor and scripts use them: GET /api/models lists them beside folders
 * (family, EMA, size, whether a built copy is cached), a run naming one over WebSocket builds it once with progress
 * on the LoadModel node and completes, and POST /api/validate refuses what the run would refuse.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { Graph } from '../../nodes/graph-format.js';
import { REPO_ROOT } from '../helpers/graphs.js';
import type { RunningServer } from '../../server/http/start.js';
import { api, isTerminal, serverPerSuite, WsClient, type Sandbox } from './helpers.js';

const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'checkpoints');
const link = (node: string, output: string) => ({ node, output });

function graph(loader: Record<string, unknown>): Graph {
  return {
    format: 'fusegraph', version: 2,
    nodes: {
      model: { type: 'LoadModel', params: { provider: 'cpu', ...loader } },
      pos: { type: 'EncodePrompt', params: { text: 'a red cat on the left' }, inputs: { model: link('model', 'model') } },
      neg: { type: 'EncodePrompt', params: { text: '' }, inputs: { model: link('model', 'model') } },
      noise: { type: 'NoiseLatent', params: { seed: 2, width: 16, height: 16, batch: 1 }, inputs: { model: link('model', 'model') } },
      eps: { type: 'PredictNoise', params: { guidance_scale: 5 }, inputs: { model: link('model', 'model'), positive: link('pos', 'cond'), negative: link('neg', 'cond') } },
      sample: { type: 'DDIMStep', params: { steps: 2, eta: 0 }, inputs: { model: link('model', 'model'), noise: link('eps', 'noise'), latent: link('noise', 'latent') } },
      decode: { type: 'Decode', inputs: { model: link('model', 'model'), latent: link('sample', 'latent') } },
      save: { type: 'SaveImage', params: { prefix: 'ckpt' }, inputs: { image: link('decode', 'image') } },
    },
  };
}

interface Listing { path: string; kind?: string; family?: string; ema?: boolean; cached?: boolean; bytes?: number; error?: string }

describe('checkpoint files on the server', () => {
  let sandbox: Sandbox;
  let server: RunningServer;
  serverPerSuite((s) => ({ sandbox, server } = s));

  it('lists checkpoints and VAE files beside folders, runs one over WebSocket (built once, progress on LoadModel), then lists it cached', async () => {
    await mkdir(path.join(sandbox.modelsRoot, 'checkpoints'), { recursive: true });
    await copyFile(path.join(FIXTURES, 'tiny-sd1.ckpt'), path.join(sandbox.modelsRoot, 'checkpoints', 'tiny-sd1.ckpt'));
    await copyFile(path.join(FIXTURES, 'tiny-vae.safetensors'), path.join(sandbox.modelsRoot, 'checkpoints', 'tiny-vae.safetensors'));
    const listing = async (): Promise<Listing[]> => (await api<{ models: Listing[] }>(server.url, '/api/models')).body.models;
    const before = await listing();
    assert.deepEqual(before.find((m) => m.path === 'tiny')?.kind, 'folder');
    const ckpt = before.find((m) => m.path === 'checkpoints/tiny-sd1.ckpt');
    assert.deepEqual({ kind: ckpt?.kind, family: ckpt?.family, ema: ckpt?.ema, cached: ckpt?.cached }, { kind: 'checkpoint', family: 'sd1', ema: true, cached: false });
    assert.ok((ckpt?.bytes ?? 0) > 1_000_000);
    assert.equal(before.find((m) => m.path === 'checkpoints/tiny-vae.safetensors')?.kind, 'vae');

    const ws = await WsClient.connect(server.url);
    try {
      await ws.waitFor((f) => f.type === 'snapshot');
      const queued = ws.next((f) => f.type === 'queued' && f.ref === 'c');
      ws.send({ type: 'run', graph: graph({ path: 'checkpoints/tiny-sd1.ckpt', vae: 'checkpoints/tiny-vae.safetensors' }), ref: 'c' });
      const runId = (await queued).run_id as string;
      const end = await ws.waitFor(isTerminal(runId), 300_000, 'the run to end');
      assert.equal(end.type, 'done', JSON.stringify(end));
      const building = ws.forRun(runId).filter((f) => f.type === 'progress' && f.node === 'model');
      assert.ok(building.length > 0, 'the build reports progress on the LoadModel node');
    } finally {
      await ws.close();
    }
    assert.equal((await listing()).find((m) => m.path === 'checkpoints/tiny-sd1.ckpt')?.cached, true);
  });

  it('a run with a LoadLoRA over the API: a warning frame names the node and what the model lacks, then done', async () => {
    await mkdir(path.join(sandbox.modelsRoot, 'loras'), { recursive: true });
    await copyFile(path.join(FIXTURES, 'lora', 'tiny-sd1-lora-kohya.safetensors'), path.join(sandbox.modelsRoot, 'loras', 'style.safetensors'));
    const g = graph({ path: 'checkpoints/tiny-sd1.ckpt' });
    g.nodes.lora = { type: 'LoadLoRA', params: { path: 'loras/style.safetensors', strength_model: 0.6, strength_clip: 1 }, inputs: { model: link('model', 'model') } };
    for (const n of Object.values(g.nodes)) {
      for (const l of Object.values(n.inputs ?? {})) if (l.node === 'model' && n.type !== 'LoadLoRA') l.node = 'lora';
    }
    const ws = await WsClient.connect(server.url, '?client_id=lora');
    try {
      await ws.waitFor((f) => f.type === 'snapshot');
      const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: g, client_id: 'lora' } });
      assert.equal(post.status, 202, JSON.stringify(post.body));
      const end = await ws.waitFor(isTerminal(post.body.run_id), 300_000, 'the LoRA run to end');
      assert.equal(end.type, 'done', JSON.stringify(end));
      const warning = ws.forRun(post.body.run_id).find((f) => f.type === 'warning');
      assert.equal(warning?.node, 'lora');
      assert.match(String(warning?.message), /2 modules of style\.safetensors have no weight in this model/);
    } finally {
      await ws.close();
    }
    const listing = (await api<{ models: Listing[] }>(server.url, '/api/models')).body.models;
    assert.equal(listing.find((m) => m.path === 'loras/style.safetensors')?.kind, 'lora');
  });

  it('POST /api/validate refuses what a run would: a VAE given as a model, EMA asked of a folder', async () => {
    const vaeAsModel = await api<{ issues: { node: string; field: string; code: string; message: string }[] }>(server.url, '/api/validate', {
      body: { graph: graph({ path: 'checkpoints/tiny-vae.safetensors' }) },
    });
    assert.deepEqual(vaeAsModel.body.issues.map((i) => [i.node, i.field, i.code]), [['model', 'params.path', 'model_unsupported']]);
    assert.match(vaeAsModel.body.issues[0]!.message, /VAE, not a model/);
    const emaFolder = await api<{ issues: { field: string }[] }>(server.url, '/api/validate', { body: { graph: graph({ path: 'tiny', ema: true }) } });
    assert.deepEqual(emaFolder.body.issues.map((i) => i.field), ['params.ema']);
  });
});
