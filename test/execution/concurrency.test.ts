import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { executeGraph } from '../../server/execution/executor.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import type { SdModel } from '../../server/sd/sd-model.js';
import { snbGraph } from '../helpers/graphs.js';
import type { TinyWorkspace } from '../helpers/tiny-models.js';
import { tinyWorkspace } from '../helpers/tiny-models.js';

/** Records when each UNet call of a model starts and ends, around the real call. */
function recordCalls(model: SdModel, log: { model: string; start: number; end: number }[]): void {
  const predict = model.predict.bind(model);
  model.predict = async (...args) => {
    const start = performance.now();
    const out = await predict(...args);
    log.push({ model: model.name, start, end: performance.now() });
    return out;
  };
}

describe('execution off the main thread', () => {
  let ws: TinyWorkspace;
  let models: ModelManager;
  before(async () => {
    // Wide UNets so one call takes long enough to observe overlap and event-loop latency.
    ws = await tinyWorkspace({ general: { seed: 1, unetWidth: 48 }, cartoon: { seed: 2, unetWidth: 48 } });
    models = new ModelManager({ threads: 1 });
  });
  after(async () => {
    await models.dispose();
    await ws.cleanup();
  });

  it('runs the two models of a blended step at the same time and keeps the event loop free', async () => {
    const log: { model: string; start: number; end: number }[] = [];
    for (const name of ['general', 'cartoon']) recordCalls(await models.acquire(path.join(ws.models, name), 'cpu'), log);
    const graph = snbGraph({ base: 'general', other: 'cartoon', promptBase: 'a lion', promptOther: 'a cartoon lion', seed: 1, size: 512, mode: 2, switchT: 0, steps: 6 });

    const ticks: number[] = [];
    const ticker = setInterval(() => ticks.push(performance.now()), 5);
    try {
      await executeGraph(graph, { roots: { models: ws.models, input: ws.input, output: ws.output }, models });
    } finally {
      clearInterval(ticker);
    }

    const general = log.filter((c) => c.model === 'general');
    const cartoon = log.filter((c) => c.model === 'cartoon');
    assert.equal(general.length, 6);
    assert.equal(cartoon.length, 6);
    // Each step issues both calls before awaiting either: their intervals overlap.
    const overlapping = general.filter((g) => cartoon.some((c) => c.start < g.end && g.start < c.end));
    assert.equal(overlapping.length, 6);
    // Inference runs outside the main thread: timers keep firing while the UNets compute. Inference on the main thread
    // would block them for the whole of every call, so no tick could fall inside one. How many fall inside depends on
    // how busy the machine is (a loaded 2-core CI machine delays timers a lot), so the test asks only that the loop
    // ticked during the calls at all, in most of the steps: what load cannot break. The tick rate is a benchmark's.
    const steps = general.map((g, i) => ({ start: Math.min(g.start, cartoon[i]!.start), end: Math.max(g.end, cartoon[i]!.end) }));
    const ticked = steps.filter((s) => ticks.some((t) => t > s.start && t < s.end)).length;
    assert.ok(ticked >= Math.ceil(steps.length / 2), `the event loop ticked inside the UNet calls of only ${ticked} of ${steps.length} steps`);
  });
});
