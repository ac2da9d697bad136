import type { GetSchemes } from 'rete';
import { ClassicPreset } from 'rete';
import type { ContextMenuExtra } from 'rete-context-menu-plugin';
import type { MinimapExtra } from 'rete-minimap-plugin';
import type { ReactArea2D } from 'rete-react-plugin';
import type { NodeDef } from '../../nodes/define.js';
import type { NodeMode } from '../../nodes/graph-format.js';
import type { SocketType } from '../../nodes/socket-types.js';
import type { ParamValue } from './graph-convert.js';

/** A rete socket that knows its FuseGraph type, so rendering and connection rules need no lookup. */
export class TypedSocket extends ClassicPreset.Socket {
  constructor(readonly type: SocketType) {
    super(type);
  }
}

type Ports = Record<string, TypedSocket>;

const BASE_WIDTH = 250;
const PROMPT_WIDTH = 310;

/**
 * One node on the canvas, built from its definition: an input port per input (one link each), an output port per
 * output, and the param values the widgets edit. Width and height are kept on the node because the minimap,
 * zoom-to-fit and auto-arrange read them from there.
 */
export class FuseNode extends ClassicPreset.Node<Ports, Ports, Record<string, never>> {
  width: number;
  height: number;
  readonly type: string;
  params: Record<string, ParamValue>;
  /** Bumped when params change from outside the widgets (undo, redo), so the widgets reload their values. */
  paramRevision = 0;
  /** Bypassed or muted: the run leaves the node out (nodes/graph-modes.ts). */
  mode: NodeMode | undefined;
  /** The user's name for this node; the type's title when unset. */
  title: string | undefined;
  color: string | undefined;
  collapsed = false;

  constructor(readonly def: NodeDef, id: string, params: Record<string, ParamValue>) {
    super(def.title);
    this.id = id;
    this.type = def.type;
    this.params = { ...params };
    Object.entries(def.inputs).forEach(([key, input], index) => {
      const port = new ClassicPreset.Input(new TypedSocket(input.type), key, false);
      port.index = index;
      this.addInput(key, port);
    });
    Object.entries(def.outputs).forEach(([key, output], index) => {
      const port = new ClassicPreset.Output(new TypedSocket(output.type), key, true);
      port.index = index;
      this.addOutput(key, port);
    });
    const multiline = Object.values(def.params).some((p) => p.kind === 'string' && p.multiline);
    this.width = multiline ? PROMPT_WIDTH : BASE_WIDTH;
    this.height = estimateHeight(def);
  }
}

/** A first guess until the view measures itself; auto-arrange may run before the DOM exists. */
function estimateHeight(def: NodeDef): number {
  const rows = Math.max(Object.keys(def.inputs).length, Object.keys(def.outputs).length);
  let h = 40 + rows * 24 + 12;
  for (const p of Object.values(def.params)) h += p.kind === 'string' && p.multiline ? 96 : 30;
  return h;
}

let connectionSeq = 0;

export class FuseConnection<A extends FuseNode, B extends FuseNode> extends ClassicPreset.Connection<A, B> {
  readonly socketType: SocketType | undefined;
  isLoop?: boolean;

  constructor(source: A, sourceOutput: string, target: B, targetInput: string) {
    super(source, sourceOutput, target, targetInput);
    // Readable in devtools, and unique even when a link is re-made while rete is still removing its twin.
    this.id = `${source.id}.${sourceOutput}>${target.id}.${targetInput}#${++connectionSeq}`;
    this.socketType = source.outputs[sourceOutput]?.socket.type;
  }
}

export type Schemes = GetSchemes<FuseNode, FuseConnection<FuseNode, FuseNode>>;
export type AreaExtra = ReactArea2D<Schemes> | ContextMenuExtra | MinimapExtra;
