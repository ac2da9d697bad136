import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { memoryFacts, unetCallBytes } from '../../server/execution/memory-model.js';
import { preflightGraph } from '../../server/execution/preflight.js';
import { RunPlan, resolveParams } from '../../server/engine/plan.js';
import type { Graph } from '../../nodes/graph-format.js';
import type { ProfilerEvent } from '../../server/sd/activation-profiler.js';
import { ActivationProfiler, fitActivation } from '../../server/sd/activation-profiler.js';
import type { MeasuredActivation } from '../../server/sd/activation-store.js';
import { ActivationStore } from '../../server/sd/activation-store.js';
import { inspectModelFolder } from '../../server/sd/model-folder.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import { sha256File } from '../../server/sd/sd-model.js';
import { txt2imgGraph } from '../helpers/graphs.js';
import type { TinyWorkspace } from '../helpers/tiny-models.js';
import { tinyWorkspace } from '../helpers/tiny-models.js';

/** A model manager that hands each load to a profiler on `dataDir`, as the server wires them; `events` records it. */
function session(dataDir: string): { store: ActivationStore; profiler: ActivationProfiler; models: ModelManager; events: ProfilerEvent[] } {
  const events: ProfilerEvent[] = [];
  const store = new ActivationStore(dataDir);
  const profiler = new ActivationProfiler({ store, onEvent: (e) => events.push(e) });
  const models = new ModelManager({ threads: 1, onLoaded: (m) => profiler.modelLoaded(m) });
  return { store, profiler, models, events };
}

describe('UNet activations measured per model on first load (issue 14)', () => {
  let ws: TinyWorkspace;
  let dataDir: string;
  const measured = new Map<string, MeasuredActivation>();
  before(async () => {
    ws = await tinyWorkspace({ narrow: { seed: 1 }, wide: { seed: 2, unetWidth: 48 } });
    dataDir = path.join(ws.root, 'data');
  });
  after(async () => {
    await ws.cleanup();
  });

  it('measures each UNet once, in the background, one probe after the other, and stores it by the file\'s SHA-256', async () => {
    const s = session(dataDir);
    try {
      for (const name of ['narrow', 'wide']) s.models.release(await s.models.acquire(path.join(ws.models, name), 'cpu'));
      await s.profiler.idle();
    } finally {
      await s.profiler.close();
      await s.models.dispose();
    }
    assert.deepEqual(s.events.map((e) => [e.type, path.basename(e.folder)]), [['measured', 'narrow'], ['measured', 'wide']]);
    for (const e of s.events) {
      assert.ok(e.type === 'measured');
      const unet = path.join(e.folder, 'unet', 'model.onnx');
      assert.equal(e.sha256, await sha256File(unet));
      assert.deepEqual(await s.store.get(e.sha256), e.activation, 'stored as measured');
      const { points, perPixel, perPixelSquared } = e.activation;
      assert.ok(points.length >= 2, JSON.stringify(points));
      // Memory grows with the latent (the smallest sizes may sit within a page or two of each other); the two sizes
      // the fit uses stand clear of the probe's noise.
      for (let i = 1; i < points.length; i++) {
        assert.ok(points[i]!.pixels > points[i - 1]!.pixels && points[i]!.bytes >= points[i - 1]!.bytes, `memory grows with the latent: ${JSON.stringify(points)}`);
      }
      const [p1, p2] = points.slice(-2);
      assert.ok(p1!.bytes >= 16 * 2 ** 20 && p2!.bytes > 2 * p1!.bytes, JSON.stringify(points));
      assert.ok(perPixel > 0 && perPixelSquared >= 0, JSON.stringify(e.activation));
      // The fit reproduces the largest measurement it was fitted to (an upper bound of it, within rounding).
      const last = points.at(-1)!;
      assert.ok(perPixel * last.pixels + perPixelSquared * last.pixels ** 2 >= last.bytes * 0.999);
      measured.set(path.basename(e.folder), e.activation);
    }
    // The tiny UNets keep a few full-resolution maps of their width F alive: 4 bytes × F × a handful per pixel.
    const narrow = measured.get('narrow')!.perPixel;
    const wide = measured.get('wide')!.perPixel;
    assert.ok(narrow > 4 * 16 && narrow < 4 * 16 * 64, `narrow (F = 16): ${narrow} bytes per pixel`);
    assert.ok(wide > 2 * narrow, `a UNet three times as wide holds more per pixel: ${wide} vs ${narrow}`);
  });

  it('a second load, in a new process\'s worth of objects on the same data dir, reuses the stored factors', async () => {
    const before = await readFile(path.join(dataDir, 'unet-activations.json'), 'utf8');
    const s = session(dataDir);
    try {
      s.models.release(await s.models.acquire(path.join(ws.models, 'narrow'), 'cpu'));
      await s.profiler.idle();
    } finally {
      await s.profiler.close();
      await s.models.dispose();
    }
    assert.deepEqual(s.events.map((e) => [e.type, path.basename(e.folder)]), [['known', 'narrow']]);
    assert.equal(await readFile(path.join(dataDir, 'unet-activations.json'), 'utf8'), before, 'nothing re-measured or rewritten');
  });

  it('admission uses the measured factors when the store has them: refuses or accepts by them, not by the config estimate', async () => {
    const store = new ActivationStore(dataDir);
    const dir = path.join(ws.models, 'narrow');
    const folder = await inspectModelFolder(dir);
    const stored = await store.lookup(folder.parts.unet);
    assert.deepEqual(stored, measured.get('narrow'), 'found by path, without hashing');
    // 512² at VAE factor 8: a 64² latent, two rows with CFG. Sampling only: the VAE decode's estimate (from its
    // config, not measured) would be the peak of the whole graph on these tiny UNets.
    const g = txt2imgGraph('narrow', { size: 512, steps: 2 });
    delete g.nodes.decode;
    delete g.nodes.save;
    const graph = everyNodePlan(g);
    const n = 64 * 64;
    const byMeasure = unetCallBytes(memoryFacts(folder, stored), 2, n);
    const byConfig = unetCallBytes(memoryFacts(folder), 2, n);
    // The tiny UNet is far smaller than the SD-sized config estimate (it has no unet/config.json): a budget between
    // the two is refused by one and accepted by the other.
    assert.ok(byMeasure * 4 < byConfig, `${byMeasure} vs ${byConfig}`);
    const budget = Math.sqrt(byMeasure * byConfig);
    const roots = { models: ws.models };
    assert.deepEqual(await preflightGraph(graph, { roots, maxRunMemory: budget, activations: store }), []);
    const refused = await preflightGraph(graph, { roots, maxRunMemory: budget });
    assert.deepEqual(refused.map((i) => [i.node, i.field, i.code]), [['noise', 'params.width', 'too_large']]);
    assert.doesNotMatch(refused[0]!.message, /measured/);
    // And the measured estimate itself is enforced: just below it, refused, saying it was measured.
    const tight = await preflightGraph(graph, { roots, maxRunMemory: byMeasure * 0.99, activations: store });
    assert.deepEqual(tight.map((i) => i.code), ['too_large']);
    assert.match(tight[0]!.message, /UNet activations as measured on the model/);
    assert.deepEqual(await preflightGraph(graph, { roots, maxRunMemory: byMeasure * 1.01, activations: store }), []);
  });
});

describe('fitActivation', () => {
  it('recovers a·n + b·n² from two exact points', () => {
    const f = (n: number) => 300 * n + 0.5 * n * n;
    const fit = fitActivation([{ side: 32, pixels: 1024, bytes: f(1024) }, { side: 64, pixels: 4096, bytes: f(4096) }]);
    assert.ok(Math.abs(fit.perPixel - 300) < 1e-6 && Math.abs(fit.perPixelSquared - 0.5) < 1e-9, JSON.stringify(fit));
  });

  it('keeps both terms ≥ 0 and an upper bound of both points when noise bends the curve down', () => {
    const points = [{ side: 128, pixels: 16384, bytes: 117e6 }, { side: 256, pixels: 65536, bytes: 323e6 }];
    const fit = fitActivation(points);
    assert.equal(fit.perPixelSquared, 0);
    for (const p of points) assert.ok(fit.perPixel * p.pixels >= p.bytes);
  });
});

/** A plan that admits every node of a graph (inputs first), even one without an output node. */
function everyNodePlan(graph: Graph): RunPlan {
  const order: string[] = [];
  while (order.length < Object.keys(graph.nodes).length) {
    for (const [id, node] of Object.entries(graph.nodes)) {
      if (!order.includes(id) && Object.values(node.inputs ?? {}).every((l) => order.includes(l.node))) order.push(id);
    }
  }
  return new RunPlan(graph, graph, order, resolveParams(graph));
}
