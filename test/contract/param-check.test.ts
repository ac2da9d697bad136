import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fc from 'fast-check';
import { isConfined } from '../../nodes/param-check.js';

/** The server's former definition on node:path, plus the leading backslash that Windows reads as absolute. */
function confinedByNodePath(rel: string): boolean {
  if (rel.includes('\0') || path.isAbsolute(rel) || /^[a-zA-Z]:/.test(rel) || rel.startsWith('\\')) return false;
  const normal = path.posix.normalize(rel.replaceAll('\\', '/'));
  return normal !== '..' && !normal.startsWith('../');
}

describe('isConfined (nodes/param-check.ts, no node:path)', () => {
  it('agrees with node:path normalisation on paths made of segments, dots and separators', () => {
    const part = fc.constantFrom('a', 'b', '.', '..', '...', '/', '\\', '//', 'C:', '\0', '..a', 'a..');
    fc.assert(fc.property(fc.array(part, { maxLength: 12 }).map((p) => p.join('')), (rel) => {
      assert.equal(isConfined(rel), confinedByNodePath(rel), JSON.stringify(rel));
    }), { numRuns: 5000 });
  });

  it('refuses the usual escapes and keeps ordinary paths', () => {
    for (const bad of ['../x', '..', 'a/../../x', '/etc', '\\\\server\\share', 'C:\\x', 'a\0b']) assert.equal(isConfined(bad), false, bad);
    for (const good of ['demo/general', 'a/../b', './x', '', 'x/..']) assert.equal(isConfined(good), true, good);
  });
});
