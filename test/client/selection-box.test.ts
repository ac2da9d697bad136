import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Box } from '../../client/editor/selection-box.js';
import { boxesInRect, rectFrom } from '../../client/editor/selection-box.js';

const boxes: Box[] = [
  { id: 'a', position: { x: 0, y: 0 }, width: 100, height: 50 },
  { id: 'b', position: { x: 200, y: 0 }, width: 100, height: 50 },
  { id: 'c', position: { x: 0, y: 300 }, width: 100, height: 50 },
];

describe('selection box', () => {
  it('spans two corners whichever way the pointer moved', () => {
    const r = { left: 10, top: 20, right: 30, bottom: 40 };
    assert.deepStrictEqual(rectFrom({ x: 10, y: 20 }, { x: 30, y: 40 }), r);
    assert.deepStrictEqual(rectFrom({ x: 30, y: 40 }, { x: 10, y: 20 }), r);
    assert.deepStrictEqual(rectFrom({ x: 30, y: 20 }, { x: 10, y: 40 }), r);
  });

  it('takes the boxes it encloses or touches, and no others', () => {
    assert.deepStrictEqual(boxesInRect(rectFrom({ x: -10, y: -10 }, { x: 310, y: 60 }), boxes), ['a', 'b']);
    assert.deepStrictEqual(boxesInRect(rectFrom({ x: 90, y: 40 }, { x: 210, y: 45 }), boxes), ['a', 'b']);
    assert.deepStrictEqual(boxesInRect(rectFrom({ x: 110, y: 60 }, { x: 190, y: 290 }), boxes), []);
    assert.deepStrictEqual(boxesInRect(rectFrom({ x: -500, y: -500 }, { x: 500, y: 500 }), boxes), ['a', 'b', 'c']);
  });
});
