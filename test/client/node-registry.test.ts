import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NodeRegistry, parseNodesResponse } from '../../client/editor/node-registry.js';
import { NODE_DEFS } from '../../nodes/index.js';

describe('node registry', () => {
  const registry = new NodeRegistry(parseNodesResponse(JSON.parse(JSON.stringify({ version: 1, nodes: NODE_DEFS }))));

  it('groups every announced type by category, in flow order', () => {
    const groups = registry.groups();
    assert.deepStrictEqual(groups.map((g) => g.category), ['model', 'conditioning', 'latent', 'sampling', 'fusion', 'image']);
    assert.equal(groups.flatMap((g) => g.defs).length, NODE_DEFS.length);
  });

  it('searches titles and types case-insensitively', () => {
    assert.deepStrictEqual(registry.groups('blend').flatMap((g) => g.defs.map((d) => d.type)), ['BlendNoise']);
    assert.deepStrictEqual(registry.groups('DDIM').flatMap((g) => g.defs.map((d) => d.type)), ['DDIMStep']);
    assert.deepStrictEqual(registry.groups('(no such'), []);
  });

  it('rejects answers that are not a node list', () => {
    assert.throws(() => parseNodesResponse({ version: 2, nodes: [] }), /version/);
    assert.throws(() => parseNodesResponse({ version: 1, nodes: [{ type: 'X' }] }), /malformed/);
  });
});
