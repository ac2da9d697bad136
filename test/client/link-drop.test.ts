import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compatibleSocket, dropCandidates, dropLink, dropPlacement } from '../../client/editor/link-drop.js';
import { NodeRegistry } from '../../client/editor/node-registry.js';
import type { NodeDef } from '../../nodes/define.js';
import { NODE_DEFS } from '../../nodes/index.js';

const registry = new NodeRegistry(NODE_DEFS);
const paletteOrder = registry.groups().flatMap((g) => g.defs);
const def = (type: string): NodeDef => {
  const d = registry.get(type);
  assert.ok(d, type);
  return d;
};

describe('link drop: which node types fit a dropped link', () => {
  it('from an output, lists exactly the types with an input of that type, in palette order', () => {
    const got = dropCandidates(paletteOrder, { side: 'output', type: 'MODEL' });
    const expected = paletteOrder.filter((d) => Object.values(d.inputs).some((i) => i.type === 'MODEL'));
    assert.deepStrictEqual(got.map((c) => c.def.type), expected.map((d) => d.type));
    assert.ok(got.some((c) => c.def.type === 'EncodePrompt' && c.key === 'model'));
    assert.ok(!got.some((c) => c.def.type === 'LoadModel'));
  });

  it('from an input, lists exactly the types with an output of that type', () => {
    const got = dropCandidates(paletteOrder, { side: 'input', type: 'MODEL' });
    assert.deepStrictEqual(got.map((c) => c.def.type), paletteOrder.filter((d) => Object.values(d.outputs).some((o) => o.type === 'MODEL')).map((d) => d.type));
    assert.deepStrictEqual(got.find((c) => c.def.type === 'LoadModel')?.key, 'model');
  });

  it('every candidate socket has the dragged type on the opposite side', () => {
    for (const side of ['input', 'output'] as const) {
      for (const type of ['MODEL', 'CONDITIONING', 'LATENT', 'NOISE', 'SALIENCY', 'IMAGE'] as const) {
        for (const c of dropCandidates(paletteOrder, { side, type })) {
          const port = side === 'output' ? c.def.inputs[c.key] : c.def.outputs[c.key];
          assert.equal(port?.type, type, `${c.def.type}.${c.key}`);
        }
      }
    }
  });

  it('picks the first fitting socket in definition order, and none when nothing fits', () => {
    const d: NodeDef = {
      type: 'T', title: 'T', category: 'latent', description: '', params: {}, output: false,
      inputs: { a: { type: 'NOISE', description: '' }, b: { type: 'LATENT', description: '' }, c: { type: 'LATENT', description: '' } },
      outputs: { out: { type: 'LATENT', description: '' } },
    };
    assert.equal(compatibleSocket(d, { side: 'output', type: 'LATENT' }), 'b');
    assert.equal(compatibleSocket(d, { side: 'input', type: 'LATENT' }), 'out');
    assert.equal(compatibleSocket(d, { side: 'input', type: 'NOISE' }), undefined);
    assert.equal(compatibleSocket(def('SaveImage'), { side: 'input', type: 'MODEL' }), undefined);
  });

  it('orients the new link output → input whichever end was dragged', () => {
    assert.deepStrictEqual(dropLink({ nodeId: 'load', side: 'output', key: 'model' }, 'enc', 'model'),
      { source: 'load', sourceOutput: 'model', target: 'enc', targetInput: 'model' });
    assert.deepStrictEqual(dropLink({ nodeId: 'enc', side: 'input', key: 'model' }, 'load', 'model'),
      { source: 'load', sourceOutput: 'model', target: 'enc', targetInput: 'model' });
  });

  it('places the new node beside the drop point on the side its socket faces', () => {
    assert.deepStrictEqual(dropPlacement('output', { x: 100, y: 200 }, 250), { x: 100, y: 160 });
    assert.deepStrictEqual(dropPlacement('input', { x: 100, y: 200 }, 250), { x: -150, y: 160 });
  });
});
