import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ToastStore } from '../../client/panels/toast-store.js';

describe('toasts', () => {
  it('replaces a toast with the next one of the same key, so quick template switches leave one', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const store = new ToastStore();
    for (const name of ['a', 'b', 'c', 'd']) store.push(`Opened template ${name}`, 'success', { key: 'open' });
    assert.deepStrictEqual(store.snapshot().map((x) => x.message), ['Opened template d']);
    store.push('Run finished', 'success', { key: 'run' });
    store.push('Cannot connect LATENT to IMAGE', 'error');
    store.push('Cannot connect LATENT to IMAGE', 'error');
    assert.deepStrictEqual(store.snapshot().map((x) => x.message), ['Opened template d', 'Run finished', 'Cannot connect LATENT to IMAGE']);
  });
});
