import type { Position } from './graph-convert.js';

export interface Rect {
  readonly left: number;
  readonly top: number;
  readonly right: number;
  readonly bottom: number;
}

export interface Box {
  readonly id: string;
  readonly position: Position;
  readonly width: number;
  readonly height: number;
}

/** The rectangle spanned by two corners, whichever way the pointer went. */
export function rectFrom(a: Position, b: Position): Rect {
  return { left: Math.min(a.x, b.x), top: Math.min(a.y, b.y), right: Math.max(a.x, b.x), bottom: Math.max(a.y, b.y) };
}

/**
 * Ids of the boxes that touch the rectangle. Touching, not containing, as in ComfyUI: a box drawn over part of a
 * tall node still takes it, so nobody has to zoom out to select one.
 */
export function boxesInRect(rect: Rect, boxes: readonly Box[]): string[] {
  return boxes
    .filter((b) => b.position.x <= rect.right && b.position.x + b.width >= rect.left && b.position.y <= rect.bottom && b.position.y + b.height >= rect.top)
    .map((b) => b.id);
}
