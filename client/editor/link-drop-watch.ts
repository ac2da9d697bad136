import type { NodeEditor } from 'rete';
import type { ConnectionPlugin } from 'rete-connection-plugin';
import type { DraggedSocket } from './link-drop.js';
import type { AreaExtra, Schemes } from './schemes.js';

/** Where a drop does not count as "on empty canvas": nodes (a refused or missed socket), menus, the minimap. */
const NOT_BACKGROUND = '.fg-node, .fg-menu, [data-testid="minimap"]';

/** A release older than this is not the one that ended the drag. */
const STALE_MS = 1000;

/**
 * Reports a dragged link let go over empty canvas, with the socket it came from and the client point of release.
 * rete's `connectiondrop` says only that no link was made (`socket` null, `created` false); it also says so for a
 * drop on a node body, for a drop the guard refused, and for a release outside the canvas, which should just drop
 * the link. The pointer release is recorded here first (capture phase on window runs before the area's own
 * listener) so the drop can be told apart by where it happened.
 */
export function watchLinkDrops(
  editor: NodeEditor<Schemes>,
  connection: ConnectionPlugin<Schemes, AreaExtra>,
  container: HTMLElement,
  onDrop: (dragged: DraggedSocket, clientX: number, clientY: number) => void,
): () => void {
  let release: { x: number; y: number; empty: boolean; at: number } | null = null;
  const up = (e: PointerEvent) => {
    const target = e.target instanceof Element ? e.target : null;
    const empty = !!target && container.contains(target) && !target.closest(NOT_BACKGROUND);
    release = { x: e.clientX, y: e.clientY, empty, at: performance.now() };
  };
  window.addEventListener('pointerup', up, true);

  connection.addPipe((ctx) => {
    if (ctx.type !== 'connectiondrop') return ctx;
    const { initial, socket, created } = ctx.data;
    const at = release;
    release = null;
    // A drop long after the last release was not made by the pointer (e.g. a programmatic `drop()`).
    if (created || socket || !at?.empty || performance.now() - at.at > STALE_MS) return ctx;
    const node = editor.getNode(initial.nodeId);
    const type = (initial.side === 'output' ? node?.outputs[initial.key] : node?.inputs[initial.key])?.socket.type;
    if (type) onDrop({ nodeId: initial.nodeId, side: initial.side, key: initial.key, type }, at.x, at.y);
    return ctx;
  });

  return () => window.removeEventListener('pointerup', up, true);
}
