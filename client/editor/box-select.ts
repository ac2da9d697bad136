import type { AreaPlugin } from 'rete-area-plugin';
import { Drag } from 'rete-area-plugin';
import type { Position } from './graph-convert.js';
import type { Box } from './selection-box.js';
import { boxesInRect, rectFrom } from './selection-box.js';
import type { AreaExtra, Schemes } from './schemes.js';

export interface BoxSelectHost {
  /** Every node's box in area coordinates. */
  readonly boxes: () => Box[];
  readonly toArea: (clientX: number, clientY: number) => Position;
  /** Selects `ids`; `accumulate` keeps what was selected before. */
  readonly select: (ids: readonly string[], accumulate: boolean) => Promise<void>;
}

/** Below this travel (px) a shift-press is a click, which the area already treats as "clear the selection". */
const MIN_TRAVEL = 4;
/** What is not empty canvas: a press there belongs to a node, a link, a menu or the minimap. */
const NOT_BACKGROUND = '.fg-node, .fg-connection, .fg-menu, [data-testid="minimap"]';

/**
 * Rectangle selection, as in ComfyUI: Shift+drag on empty canvas draws a box and selects the nodes it touches
 * (Ctrl/Meta as well adds them to the selection). A plain drag still pans. Returns a function that unbinds it.
 */
export function enableBoxSelect(area: AreaPlugin<Schemes, AreaExtra>, host: BoxSelectHost): () => void {
  const container = area.container;
  // The area pans on any primary-button drag of the background; it has to leave Shift+drags to the box.
  area.area.setDragHandler(new Drag({
    down: (e) => !(e.pointerType === 'mouse' && e.button !== 0) && !e.shiftKey,
    move: () => true,
  }));

  let end: (() => void) | null = null;

  const down = (e: PointerEvent) => {
    if (!e.shiftKey || e.button !== 0 || end) return;
    const target = e.target as Element | null;
    if (!target || !container.contains(target) || target.closest(NOT_BACKGROUND)) return;
    // Otherwise the browser starts a text selection across the node labels.
    e.preventDefault();
    const accumulate = e.ctrlKey || e.metaKey;
    const start = { x: e.clientX, y: e.clientY };
    let last = start;
    const box = document.createElement('div');
    box.className = 'fg-select-box';
    box.dataset.testid = 'select-box';
    const draw = () => {
      const origin = container.getBoundingClientRect();
      const r = rectFrom(start, last);
      box.style.left = `${r.left - origin.left}px`;
      box.style.top = `${r.top - origin.top}px`;
      box.style.width = `${r.right - r.left}px`;
      box.style.height = `${r.bottom - r.top}px`;
    };
    draw();
    container.appendChild(box);
    container.classList.add('fg-boxing');

    const move = (ev: PointerEvent) => {
      last = { x: ev.clientX, y: ev.clientY };
      draw();
    };
    const finish = (commit: boolean) => {
      window.removeEventListener('pointermove', move);
      window.removeEventListener('pointerup', up);
      window.removeEventListener('pointercancel', cancel);
      window.removeEventListener('keydown', key);
      box.remove();
      container.classList.remove('fg-boxing');
      end = null;
      if (!commit || Math.hypot(last.x - start.x, last.y - start.y) < MIN_TRAVEL) return;
      const rect = rectFrom(host.toArea(start.x, start.y), host.toArea(last.x, last.y));
      void host.select(boxesInRect(rect, host.boxes()), accumulate);
    };
    const up = (ev: PointerEvent) => {
      last = { x: ev.clientX, y: ev.clientY };
      finish(true);
    };
    const cancel = () => finish(false);
    const key = (ev: KeyboardEvent) => {
      if (ev.key === 'Escape') finish(false);
    };
    window.addEventListener('pointermove', move);
    window.addEventListener('pointerup', up);
    window.addEventListener('pointercancel', cancel);
    window.addEventListener('keydown', key);
    end = cancel;
  };

  container.addEventListener('pointerdown', down);
  return () => {
    container.removeEventListener('pointerdown', down);
    end?.();
  };
}
