import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SAMPLER_NAMES } from '../../nodes/index.js';
import type { RunningServer } from '../../server/http/start.js';
import { snbGraph } from '../helpers/graphs.js';
import { api, serverPerSuite, isTerminal, TINY_MODEL, WsClient } from './helpers.js';

describe('fusion graphs with every sampler through the server', () => {
  let server: RunningServer;
  serverPerSuite((s) => ({ server } = s));

  it('each sampler runs an SNB graph to done, with progress per model call', async () => {
    const ws = await WsClient.connect(server.url, '?client_id=samplers');
    try {
      for (const sampler of SAMPLER_NAMES) {
        const g = snbGraph({ base: TINY_MODEL, other: TINY_MODEL, promptBase: 'a lion', promptOther: 'a cartoon lion', seed: 1, size: 64, mode: 2, switchT: 500, steps: 4 });
        g.nodes.ddim = { type: 'Sampler', params: { sampler, schedule: sampler === 'ddim' ? 'default' : 'karras', steps: 4, seed: 2 }, inputs: g.nodes.ddim!.inputs };
        const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: g, client_id: 'samplers' } });
        assert.equal(post.status, 202, JSON.stringify(post.body));
        const end = await ws.waitFor(isTerminal(post.body.run_id), 60_000, `the end of the ${sampler} run`);
        assert.equal(end.type, 'done', `${sampler}: ${JSON.stringify(end)}`);
        const progress = ws.forRun(post.body.run_id).filter((f) => f.type === 'progress' && f.node === 'ddim');
        assert.equal(progress.at(-1)?.steps, sampler === 'heun' ? 7 : 4, sampler);
      }
    } finally {
      await ws.close();
    }
  });
});
