import type { Box } from './annotations.js';
import type { Position } from './graph-convert.js';

/**
 * The zoom at which the smallest running text on a node (11 px labels and widgets) is still 10 px on screen.
 * A graph opens at this zoom or closer.
 */
export const READABLE_ZOOM = 10 / 11;
/** Screen pixels left free around a fitted graph. */
const FIT_MARGIN = 24;
/** Gap kept between a new node and the ones around it. */
const GAP = 16;
const SEARCH_STEP = 40;
const SEARCH_RINGS = 30;

export interface Transform {
  readonly k: number;
  readonly x: number;
  readonly y: number;
}

function bounds(boxes: readonly Box[]): Box {
  const left = Math.min(...boxes.map((b) => b.x));
  const top = Math.min(...boxes.map((b) => b.y));
  const right = Math.max(...boxes.map((b) => b.x + b.width));
  const bottom = Math.max(...boxes.map((b) => b.y + b.height));
  return { x: left, y: top, width: right - left, height: bottom - top };
}

/**
 * The area transform that shows `boxes` in a view of `view` size, centred and never above 100 %. With `readable`, a
 * graph that would need a zoom below READABLE_ZOOM is shown instead at 100 % from its left edge (vertically centred
 * when it fits in height, from its top when not), so what the user sees first can be read.
 */
export function fitTransform(boxes: readonly Box[], view: { readonly width: number; readonly height: number }, readable: boolean): Transform {
  const b = bounds(boxes);
  const fit = Math.min((view.width - 2 * FIT_MARGIN) / Math.max(1, b.width), (view.height - 2 * FIT_MARGIN) / Math.max(1, b.height), 1);
  if (readable && fit < READABLE_ZOOM) {
    const k = 1;
    const y = b.height * k <= view.height - 2 * FIT_MARGIN ? (view.height - b.height * k) / 2 - b.y * k : FIT_MARGIN - b.y * k;
    return { k, x: FIT_MARGIN - b.x * k, y };
  }
  const k = Math.max(fit, 0.05);
  return { k, x: (view.width - b.width * k) / 2 - b.x * k, y: (view.height - b.height * k) / 2 - b.y * k };
}

const overlaps = (a: Box, b: Box) =>
  a.x < b.x + b.width + GAP && b.x < a.x + a.width + GAP && a.y < b.y + b.height + GAP && b.y < a.y + a.height + GAP;

/**
 * Where a new node of `size` goes when no point was given: `start` if that covers no node, else the nearest free
 * place on a grid around it (so repeated palette clicks lay nodes side by side instead of stacking them).
 */
export function freeSpot(start: Position, size: { readonly width: number; readonly height: number }, taken: readonly Box[]): Position {
  const free = (p: Position) => !taken.some((t) => overlaps({ x: p.x, y: p.y, width: size.width, height: size.height }, t));
  if (free(start)) return start;
  for (let ring = 1; ring <= SEARCH_RINGS; ring++) {
    const candidates: Position[] = [];
    for (let i = -ring; i <= ring; i++) {
      for (let j = -ring; j <= ring; j++) {
        if (Math.max(Math.abs(i), Math.abs(j)) !== ring) continue;
        candidates.push({ x: start.x + i * SEARCH_STEP, y: start.y + j * SEARCH_STEP });
      }
    }
    candidates.sort((a, b) => Math.hypot(a.x - start.x, a.y - start.y) - Math.hypot(b.x - start.x, b.y - start.y));
    const found = candidates.find(free);
    if (found) return found;
  }
  return { x: start.x + GAP * taken.length, y: start.y + GAP * taken.length };
}
