import type { NodeDef } from '../../nodes/define.js';
import type { SocketType } from '../../nodes/socket-types.js';
import { socketsCompatible } from '../../nodes/socket-types.js';
import type { Position } from './graph-convert.js';

/** The socket a link was dragged from when it was dropped on empty canvas. */
export interface DraggedSocket {
  readonly nodeId: string;
  readonly side: 'input' | 'output';
  readonly key: string;
  readonly type: SocketType;
}

/** A node type that can take the dragged link, and the socket on it that would. */
export interface DropCandidate {
  readonly def: NodeDef;
  readonly key: string;
}

export interface DropLink {
  readonly source: string;
  readonly sourceOutput: string;
  readonly target: string;
  readonly targetInput: string;
}

/**
 * The socket of `def` that fits the dragged one: an input of the dragged output's type, or an output of the dragged
 * input's type. The first in definition order wins, which is the one drawn topmost on the node.
 */
export function compatibleSocket(def: NodeDef, dragged: Pick<DraggedSocket, 'side' | 'type'>): string | undefined {
  if (dragged.side === 'output') {
    return Object.entries(def.inputs).find(([, input]) => socketsCompatible(dragged.type, input.type))?.[0];
  }
  return Object.entries(def.outputs).find(([, output]) => socketsCompatible(output.type, dragged.type))?.[0];
}

/** Every node type with a socket that fits, in the order given (the palette's), so the menu reads like the palette. */
export function dropCandidates(defs: readonly NodeDef[], dragged: Pick<DraggedSocket, 'side' | 'type'>): DropCandidate[] {
  const out: DropCandidate[] = [];
  for (const def of defs) {
    const key = compatibleSocket(def, dragged);
    if (key !== undefined) out.push({ def, key });
  }
  return out;
}

/** The link between the dragged socket and socket `key` of the new node `nodeId`, oriented output → input. */
export function dropLink(dragged: Pick<DraggedSocket, 'nodeId' | 'side' | 'key'>, nodeId: string, key: string): DropLink {
  return dragged.side === 'output'
    ? { source: dragged.nodeId, sourceOutput: dragged.key, target: nodeId, targetInput: key }
    : { source: nodeId, sourceOutput: key, target: dragged.nodeId, targetInput: dragged.key };
}

/** Roughly the header's height: the new node's first socket row then sits at the drop point's height. */
const HEADER_OFFSET = 40;

/**
 * Top-left corner for the new node so that the link stays short and does not cross it: to the right of the drop
 * point when it will take an input (its inputs are on its left), to the left when it will feed one.
 */
export function dropPlacement(side: DraggedSocket['side'], at: Position, width: number): Position {
  return { x: side === 'output' ? at.x : at.x - width, y: at.y - HEADER_OFFSET };
}
