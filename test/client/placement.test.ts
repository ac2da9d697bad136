import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Box } from '../../client/editor/annotations.js';
import { groupBounds } from '../../client/editor/annotations.js';
import { fitTransform, freeSpot, READABLE_ZOOM } from '../../client/editor/placement.js';

const view = { width: 1000, height: 700 };
const onScreen = (b: Box, t: { k: number; x: number; y: number }) => ({
  x: b.x * t.k + t.x, y: b.y * t.k + t.y, width: b.width * t.k, height: b.height * t.k,
});

describe('fitting a graph into the view', () => {
  it('centres a small graph at 100 % at most', () => {
    const t = fitTransform([{ x: 0, y: 0, width: 200, height: 100 }], view, true);
    assert.equal(t.k, 1);
    assert.deepStrictEqual(onScreen({ x: 0, y: 0, width: 200, height: 100 }, t), { x: 400, y: 300, width: 200, height: 100 });
  });

  it('shrinks a graph that fits at a readable zoom, keeping it all in view', () => {
    const boxes = [{ x: 0, y: 0, width: 500, height: 300 }, { x: 600, y: 200, width: 400, height: 400 }];
    const t = fitTransform(boxes, view, true);
    assert.ok(t.k >= READABLE_ZOOM && t.k < 1);
    for (const b of boxes.map((x) => onScreen(x, t))) {
      assert.ok(b.x >= 0 && b.y >= 0 && b.x + b.width <= view.width && b.y + b.height <= view.height);
    }
  });

  it('shows the left part of a graph too big to read whole at 100 %, from its left edge', () => {
    const boxes = [{ x: -300, y: 50, width: 250, height: 200 }, { x: 2500, y: 40, width: 250, height: 200 }];
    const t = fitTransform(boxes, view, true);
    assert.equal(t.k, 1);
    assert.equal(onScreen(boxes[0]!, t).x, 24);
    // F (not readable) fits everything, however small.
    const all = fitTransform(boxes, view, false);
    assert.ok(all.k < READABLE_ZOOM);
    assert.ok(onScreen(boxes[1]!, all).x + 250 * all.k <= view.width);
  });
});

describe('free spot for a new node', () => {
  it('keeps the requested place when it is free, and never overlaps otherwise', () => {
    assert.deepStrictEqual(freeSpot({ x: 10, y: 10 }, { width: 100, height: 50 }, []), { x: 10, y: 10 });
    fc.assert(fc.property(
      fc.array(fc.record({ x: fc.integer({ min: -400, max: 400 }), y: fc.integer({ min: -400, max: 400 }) }), { maxLength: 12 }),
      (corners) => {
        const taken = corners.map((c) => ({ ...c, width: 200, height: 120 }));
        const p = freeSpot({ x: 0, y: 0 }, { width: 200, height: 120 }, taken);
        return taken.every((t) => p.x >= t.x + t.width || t.x >= p.x + 200 || p.y >= t.y + t.height || t.y >= p.y + 120);
      },
    ));
  });

  it('puts three nodes added at one centre side by side', () => {
    const taken: Box[] = [];
    for (let i = 0; i < 3; i++) taken.push({ ...freeSpot({ x: 0, y: 0 }, { width: 250, height: 100 }, taken), width: 250, height: 100 });
    assert.equal(new Set(taken.map((b) => `${b.x},${b.y}`)).size, 3);
  });
});

describe('group frames', () => {
  it('surround their members with padding and room for the title', () => {
    assert.deepStrictEqual(groupBounds([{ x: 0, y: 0, width: 100, height: 50 }, null, { x: 200, y: 100, width: 50, height: 50 }]),
      { x: -16, y: -46, width: 282, height: 212 });
    assert.equal(groupBounds([null]), null);
  });
});
