import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fusionGraph } from '../../examples/fusion-graph.js';
import { validateGraph } from '../../server/engine/validate.js';
import { graph, GraphBuildError, type OutputRef } from '../../sdk/index.js';
import { bundledGraph } from '../helpers/graphs.js';

/** Never called: `tsc --noEmit` (npm test) fails if any of these lines compiles. */
export function compileTimeChecks(): void {
  const g = graph();
  const m = g.add('LoadModel', { path: 'demo/general' });
  const c = g.add('EncodePrompt', { text: 'x' }, { model: m.out.model });
  const e = g.add('PredictNoise', {}, { model: m.out.model, positive: c.out.cond, negative: c.out.cond });
  // @ts-expect-error a CONDITIONING output cannot feed a MODEL input
  g.add('EncodePrompt', { text: 'x' }, { model: c.out.cond });
  // @ts-expect-error EncodePrompt has no param "txt"
  g.add('EncodePrompt', { txt: 'x' }, { model: m.out.model });
  // @ts-expect-error "max" is not one of BlendNoise's modes
  g.add('BlendNoise', { mode: 'max' }, { a: e.out.noise, b: e.out.noise, saliency_a: undefined!, saliency_b: undefined! });
  // @ts-expect-error the required input "model" is missing
  g.add('EncodePrompt', { text: 'x' }, {});
  // @ts-expect-error a node with required inputs needs its links
  g.add('Decode');
  // @ts-expect-error there is no node type "Upscale"
  g.add('Upscale');
  // @ts-expect-error steps is a number
  g.add('DDIMStep', { steps: '50' }, { model: m.out.model, noise: e.out.noise, latent: undefined! });
}

describe('graph builder (sdk/graph-builder.ts)', () => {
  it('rebuilds the bundled demo fusion graph exactly', () => {
    assert.deepStrictEqual(fusionGraph({ version: 1 }), bundledGraph('demo-fusion'));
    const v2 = fusionGraph();
    assert.equal(v2.version, 2);
    assert.deepEqual(validateGraph(v2).issues, []);
    assert.deepEqual(validateGraph(fusionGraph({ compare: false, switchT: 900, steps: 4 })).issues, []);
  });

  it('refuses at build time what TypeScript cannot see, naming node and field', () => {
    const g = graph();
    const m = g.add('LoadModel', { path: 'demo/general' }, {}, { id: 'm' });
    const cond = g.add('EncodePrompt', { text: 'x' }, { model: m.out.model }, { id: 'c' });
    const refuses = (f: () => unknown, node: string | null, field: string | null, message: RegExp) =>
      assert.throws(f, (err: unknown) => err instanceof GraphBuildError && err.node === node && err.field === field && message.test(err.message));
    refuses(() => g.add('NoiseLatent', { seed: 0, width: 4100 }, { model: m.out.model }, { id: 'n' }), 'n', 'params.width', /out of range/);
    refuses(() => g.add('LoadModel', { path: '../outside' }, {}, { id: 'x' }), 'x', 'params.path', /escapes/);
    refuses(() => g.add('LoadModel', undefined, {}, { id: 'nopath' }), 'nopath', 'params.path', /required/);
    refuses(() => g.add('LoadModel', { path: 'a' }, {}, { id: 'm' }), 'm', null, /already/);
    // What a plain-JavaScript caller can get wrong:
    const loose = g as unknown as { add(type: string, params?: object, inputs?: object, o?: object): unknown };
    refuses(() => loose.add('EncodePrompt', { txt: 'x' }, { model: m.out.model }, { id: 'p' }), 'p', 'params.txt', /no param/);
    refuses(() => loose.add('EncodePrompt', { text: 'x' }, { model: cond.out.cond }, { id: 'q' }), 'q', 'inputs.model', /takes MODEL, got CONDITIONING/);
    refuses(() => loose.add('EncodePrompt', { text: 'x' }, {}, { id: 'r' }), 'r', 'inputs.model', /needs a MODEL link/);
    const foreign: OutputRef<'MODEL'> = { node: 'elsewhere', output: 'model', type: 'MODEL' };
    refuses(() => g.add('EncodePrompt', { text: 'x' }, { model: foreign }, { id: 's' }), 's', 'inputs.model', /not in this graph/);
    refuses(() => loose.add('Upscale', {}, {}, { id: 'u' }), 'u', 'type', /unknown node type/);

    g.add('EncodePrompt', { text: 'muted' }, { model: m.out.model }, { id: 'muted', mode: 'mute' });
    refuses(() => g.build({ version: 1 }), 'muted', 'mode', /v1/);
    assert.equal(g.build().nodes.muted?.mode, 'mute');
  });

  it('names nodes it was not given ids for by type', () => {
    const g = graph();
    const a = g.add('LoadModel', { path: 'demo/general' });
    const b = g.add('LoadModel', { path: 'demo/cartoon' });
    assert.deepEqual([a.id, b.id], ['LoadModel_1', 'LoadModel_2']);
    assert.deepEqual(a.out.model, { node: 'LoadModel_1', output: 'model', type: 'MODEL' });
  });
});
