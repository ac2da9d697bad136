import type { HistoryAction } from 'rete-history-plugin';
import type { ParamValue } from './graph-convert.js';

/**
 * A widget edit as an undoable step. rete's history preset knows nodes, links and drags only; without this, Ctrl+Z
 * after typing a prompt would undo the last drag instead. Consecutive edits of one field fold into one action.
 */
export class ParamChangeAction implements HistoryAction {
  constructor(
    readonly nodeId: string,
    readonly param: string,
    readonly previous: ParamValue,
    public next: ParamValue,
    private readonly apply: (nodeId: string, param: string, value: ParamValue) => void,
  ) {}

  undo(): void {
    this.apply(this.nodeId, this.param, this.previous);
  }

  redo(): void {
    this.apply(this.nodeId, this.param, this.next);
  }
}
