import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { Graph } from '../../nodes/graph-format.js';
import { memoryFacts, unetCallBytes } from '../../server/execution/memory-model.js';
import type { ProfilerEvent } from '../../server/sd/activation-profiler.js';
import { ActivationStore } from '../../server/sd/activation-store.js';
import { inspectModelFolder } from '../../server/sd/model-folder.js';
import { api, isTerminal, makeSandbox, startIn, txt2img, TINY_MODEL, WsClient, type Sandbox } from './helpers.js';

/** Sampling to a saved latent (no VAE decode, whose config-based estimate would be the graph's peak on the tiny model). */
function sampling(size: number): Graph {
  const g = txt2img({ size, steps: 2 });
  delete g.nodes.decode;
  g.nodes.save = { type: 'SaveLatent', params: { filename: 'x.npy' }, inputs: { latent: { node: 'sample', output: 'latent' } } };
  return g;
}

/** Starts a server on `dataDir` whose activation events go to a list, with a promise for the next one. */
async function serverOn(sandbox: Sandbox, dataDir: string, maxRunMemory?: number) {
  const events: ProfilerEvent[] = [];
  let notify: (() => void) | undefined;
  const server = await startIn({ ...sandbox, dataDir }, {
    ...(maxRunMemory !== undefined ? { maxRunMemory } : {}),
    onActivationEvent: (e) => {
      events.push(e);
      notify?.();
    },
  });
  /** The first event after now. */
  const nextEvent = (): Promise<ProfilerEvent> => {
    const seen = events.length;
    return new Promise((resolve) => (notify = () => resolve(events[seen]!)));
  };
  return { server, events, nextEvent };
}

const runToEnd = async (url: string, graph: Graph): Promise<string> => {
  const ws = await WsClient.connect(url, '?client_id=act');
  try {
    const post = await api<{ run_id: string }>(url, '/api/runs', { body: { graph, client_id: 'act' } });
    assert.equal(post.status, 202, JSON.stringify(post.body));
    return (await ws.waitFor(isTerminal(post.body.run_id), 60_000)).type;
  } finally {
    await ws.close();
  }
};

describe('the server measures a model\'s UNet on first load and admits by it, across restarts (issue 14)', () => {
  let sandbox: Sandbox;
  before(async () => {
    sandbox = await makeSandbox();
  });
  after(async () => {
    await sandbox?.remove();
  });

  it('measures in the background after the first run, then a restarted server admits by the stored factors', async () => {
    const dataDir = path.join(sandbox.root, 'data-a');
    // First start: the model loads for a small run and is measured once, in the background.
    const first = await serverOn(sandbox, dataDir);
    try {
      const measured = first.nextEvent();
      assert.equal(await runToEnd(first.server.url, sampling(64)), 'done');
      assert.equal((await measured).type, 'measured');
    } finally {
      await first.server.close();
    }
    assert.deepEqual(first.events.map((e) => e.type), ['measured']);

    // A budget between the measured and the config-based estimates of a 512² run (64² latent, CFG: two rows).
    const folder = await inspectModelFolder(path.join(sandbox.modelsRoot, TINY_MODEL));
    const stored = await new ActivationStore(dataDir).lookup(folder.parts.unet);
    assert.ok(stored);
    const byMeasure = unetCallBytes(memoryFacts(folder, stored), 2, 64 * 64);
    const byConfig = unetCallBytes(memoryFacts(folder), 2, 64 * 64);
    assert.ok(byMeasure * 4 < byConfig, `${byMeasure} vs ${byConfig}`);
    const budget = Math.round(Math.sqrt(byMeasure * byConfig));

    // Restarted on the same data dir: the 512² run is admitted by the measured factors (before any model loads)
    // and the model's load finds them stored instead of measuring again.
    const second = await serverOn(sandbox, dataDir, budget);
    try {
      const known = second.nextEvent();
      assert.equal(await runToEnd(second.server.url, sampling(512)), 'done');
      assert.equal((await known).type, 'known');
    } finally {
      await second.server.close();
    }
    assert.deepEqual(second.events.map((e) => e.type), ['known']);

    // A server on a data dir without the measurement refuses the same run by the config-based estimate.
    const third = await serverOn(sandbox, path.join(sandbox.root, 'data-b'), budget);
    try {
      const res = await api<{ issues: { node: string; code: string }[] }>(third.server.url, '/api/runs', { body: { graph: sampling(512) } });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.deepEqual(res.body.issues.map((i) => [i.node, i.code]), [['noise', 'too_large']]);
    } finally {
      await third.server.close();
    }
  });
});
