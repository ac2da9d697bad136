import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ExistingLink, LinkProposal } from '../../client/editor/connection-rules.js';
import { checkLink, reaches } from '../../client/editor/connection-rules.js';

// model → prompt → eps → sample, model → sample
const links: ExistingLink[] = [
  { source: 'model', target: 'prompt', targetInput: 'model' },
  { source: 'prompt', target: 'eps', targetInput: 'positive' },
  { source: 'eps', target: 'sample', targetInput: 'noise' },
  { source: 'model', target: 'sample', targetInput: 'model' },
];

const propose = (p: Partial<LinkProposal>): LinkProposal => ({
  source: 'model', sourceOutput: 'model', sourceType: 'MODEL', target: 'eps', targetInput: 'model', targetType: 'MODEL', ...p,
});

describe('link rules', () => {
  it('accepts a link between sockets of the same type', () => {
    assert.deepStrictEqual(checkLink(propose({}), links, { replacesExisting: false }), { ok: true });
  });

  it('refuses incompatible types and names both', () => {
    const v = checkLink(propose({ sourceType: 'NOISE', targetType: 'LATENT', targetInput: 'latent' }), links, { replacesExisting: true });
    assert.equal(v.ok, false);
    assert.match(!v.ok ? v.reason : '', /NOISE.*LATENT/);
  });

  it('refuses a second link into an input unless the drag replaces it', () => {
    const second = propose({ target: 'sample', targetInput: 'model' });
    assert.equal(checkLink(second, links, { replacesExisting: false }).ok, false);
    assert.equal(checkLink(second, links, { replacesExisting: true }).ok, true);
  });

  it('refuses cycles, including a node feeding itself', () => {
    const back = propose({ source: 'sample', sourceOutput: 'latent', sourceType: 'MODEL', target: 'prompt', targetInput: 'model' });
    const v = checkLink(back, links, { replacesExisting: true });
    assert.ok(!v.ok && /cycle/.test(v.reason));
    assert.equal(checkLink(propose({ source: 'eps', target: 'eps' }), links, { replacesExisting: true }).ok, false);
  });

  it('finds paths along links only downstream', () => {
    assert.equal(reaches('model', 'sample', links), true);
    assert.equal(reaches('sample', 'model', links), false);
    assert.equal(reaches('prompt', 'prompt', links), true);
  });
});
