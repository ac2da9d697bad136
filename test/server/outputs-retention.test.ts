import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import type { Graph } from '../../nodes/graph-format.js';
import { RunStore } from '../../server/services/run-store.js';
import { api, gate, gateWait, isTerminal, makeSandbox, serveProcess, startIn, txt2img, WsClient } from './helpers.js';

interface Summary { id: string; status: string; outputs: { name: string }[] }

/** txt2img with a second sampler, decode and SaveImage after the first one's (plan order: save, then save_b). */
function twoSaves(steps: number): Graph {
  const g = txt2img({ steps });
  const link = (node: string, output: string) => ({ node, output });
  g.nodes.sample_b = { type: 'DDIMStep', params: { steps, seed: 1 }, inputs: { model: link('model', 'model'), noise: link('eps', 'noise'), latent: link('noise', 'latent') } };
  g.nodes.decode_b = { type: 'Decode', inputs: { model: link('model', 'model'), latent: link('sample_b', 'latent') } };
  g.nodes.save_b = { type: 'SaveImage', params: { prefix: 'test' }, inputs: { image: link('decode_b', 'image') } };
  return g;
}

const pngs = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((f) => f.endsWith('.png')).sort();

describe('outputs, retention and queue limits (issue 14, defects 9 and 11)', () => {
  it('a run killed between its two SaveImage writes leaves no orphan: the retry removes it and reuses the numbers', async () => {
    const sandbox = await makeSandbox();
    try {
      const { url, child, exited } = await serveProcess(sandbox);
      let runId: string;
      try {
        // The first sampler's 2 steps pass, so "save" writes its file; the second sampler waits at its first step.
        await gate(url, { hold: true, release_steps: 2 });
        const post = await api<{ run_id: string }>(url, '/api/runs', { body: { graph: twoSaves(2) } });
        runId = post.body.run_id;
        const held = await gateWait(url, { waiting: 1 });
        assert.equal(held.waiting[0]!.node, 'sample_b');
        assert.deepEqual(await pngs(sandbox.outputRoot), ['test_00001.png'], 'the first write happened');
      } finally {
        child.kill('SIGKILL');
        await exited;
      }

      const server = await startIn(sandbox);
      try {
        const ws = await WsClient.connect(server.url);
        try {
          ws.send({ type: 'subscribe', runs: [runId] });
          await ws.waitFor((f) => f.type === 'snapshot');
          const run = await api<Summary>(server.url, `/api/runs/${runId}`);
          if (run.body.status !== 'done') assert.equal((await ws.waitFor(isTerminal(runId), 60_000)).type, 'done');
        } finally {
          await ws.close();
        }
        const done = await api<Summary>(server.url, `/api/runs/${runId}`);
        assert.equal(done.body.status, 'done');
        const names = done.body.outputs.map((o) => o.name).sort();
        assert.deepEqual(names, ['test_00001.png', 'test_00002.png']);
        assert.deepEqual(await pngs(sandbox.outputRoot), names, 'no orphan next to them');
      } finally {
        await server.close();
      }
    } finally {
      await sandbox.remove();
    }
  });

  it('limits queued + running runs per client_id with 429 queue_full', async () => {
    const sandbox = await makeSandbox();
    const server = await startIn(sandbox, { maxQueuedPerClient: 3 });
    try {
      await api(server.url, '/api/queue/pause', { method: 'POST' });
      const submit = (client_id?: string) => api<{ error?: string; message?: string }>(server.url, '/api/runs', { body: { graph: txt2img(), ...(client_id ? { client_id } : {}) } });
      for (let i = 0; i < 3; i++) assert.equal((await submit('greedy')).status, 202);
      const refused = await submit('greedy');
      assert.equal(refused.status, 429);
      assert.equal(refused.body.error, 'queue_full');
      assert.match(refused.body.message!, /client "greedy": 3 runs already queued or running/);
      assert.equal((await submit('polite')).status, 202, 'other clients are not affected');
      for (let i = 0; i < 3; i++) assert.equal((await submit()).status, 202);
      assert.equal((await submit()).status, 429, 'runs without a client_id share one count');
    } finally {
      await server.close();
      await sandbox.remove();
    }
  });

  it('keeps the newest --keep-runs finished runs and deletes older ones with their files', async () => {
    const sandbox = await makeSandbox();
    const server = await startIn(sandbox, { keepRuns: 2 });
    try {
      const ws = await WsClient.connect(server.url, '?client_id=keep');
      const ids: string[] = [];
      try {
        for (const seed of [1, 2, 3, 4]) {
          const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: txt2img({ seed }), client_id: 'keep' } });
          ids.push(post.body.run_id);
          assert.equal((await ws.waitFor(isTerminal(post.body.run_id), 60_000)).type, 'done');
        }
      } finally {
        await ws.close();
      }
      const list = await api<{ runs: Summary[] }>(server.url, '/api/runs');
      assert.deepEqual(list.body.runs.map((r) => r.id), [ids[3], ids[2]]);
      assert.deepEqual(await pngs(sandbox.outputRoot), list.body.runs.flatMap((r) => r.outputs.map((o) => o.name)).sort());
      assert.equal((await api(server.url, `/api/runs/${ids[0]}`)).status, 404);
    } finally {
      await server.close();
      await sandbox.remove();
    }
  });

  it('deletes finished runs older than --keep-days at start', async () => {
    const sandbox = await makeSandbox();
    try {
      const store = new RunStore(sandbox.dataDir);
      const day = 86_400_000;
      for (const [id, age] of [['old', 3 * day], ['recent', day / 2]] as const) {
        store.insert({ id, graph: txt2img(), client_id: null, created_at: Date.now() - age });
        store.markFinished(id, { status: 'done', finished_at: Date.now() - age });
      }
      store.close();
      const server = await startIn(sandbox, { keepDays: 1 });
      try {
        assert.equal((await api(server.url, '/api/runs/old')).status, 404);
        assert.equal((await api(server.url, '/api/runs/recent')).status, 200);
      } finally {
        await server.close();
      }
    } finally {
      await sandbox.remove();
    }
  });
});
