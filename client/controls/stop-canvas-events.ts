import type { SyntheticEvent, WheelEvent } from 'react';

const stop = (e: SyntheticEvent) => e.stopPropagation();

/**
 * Spread on a widget's wrapper: the area plugin drags the node on pointerdown and zooms on double-click, which would
 * otherwise steal text selection and spinner clicks from the widget. The wheel is left alone (zooming over a node
 * must work); widgets that scroll stop it themselves with `wheelIfScrollable`.
 */
export const stopCanvasEvents = {
  onPointerDown: stop,
  onDoubleClick: stop,
  onContextMenu: stop,
} as const;

/** Lets a scrollable element (a long prompt) scroll instead of zooming the canvas; otherwise the canvas zooms. */
export function wheelIfScrollable(e: WheelEvent<HTMLElement>): void {
  const el = e.currentTarget;
  if (el.scrollHeight > el.clientHeight + 1 || document.activeElement === el) e.stopPropagation();
}
