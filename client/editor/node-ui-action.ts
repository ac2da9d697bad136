import type { HistoryAction } from 'rete-history-plugin';
import type { NodeMode } from '../../nodes/graph-format.js';

/** How a node looks and whether it runs: the node fields that are not params. `undefined` clears a field. */
export interface NodeUi {
  readonly mode?: NodeMode | undefined;
  readonly title?: string | undefined;
  readonly color?: string | undefined;
  readonly collapsed?: boolean;
}

/** One edit of those fields over one or more nodes (Ctrl+B on a selection is one undo step). */
export class NodeUiAction implements HistoryAction {
  constructor(
    private readonly changes: readonly { readonly id: string; readonly before: NodeUi; readonly after: NodeUi }[],
    private readonly apply: (nodeId: string, ui: NodeUi) => void,
  ) {}

  undo(): void {
    for (const c of this.changes) this.apply(c.id, c.before);
  }

  redo(): void {
    for (const c of this.changes) this.apply(c.id, c.after);
  }
}
