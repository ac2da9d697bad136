import type { NodeEditor } from 'rete';
import type { ConnectionPlugin, SocketData } from 'rete-connection-plugin';
import { ClassicFlow, getSourceTarget } from 'rete-connection-plugin';
import type { LinkProposal, LinkVerdict } from './connection-rules.js';
import { checkLink } from './connection-rules.js';
import type { AreaExtra, Schemes } from './schemes.js';
import { FuseConnection } from './schemes.js';

type Refuse = (reason: string) => void;

/**
 * ClassicFlow with rete's race around dragging a link off an input fixed. Picking a linked input starts a state
 * that learns the socket it carries (the link's output) only once an async signal resolves; the connection plugin
 * asks for that socket before then, finds none and drops the flow, while the state goes on to remove the link. The
 * link vanished, no drag followed, and no `connectiondrop` ever cleared the socket highlight (issue 16.3). Until
 * the signal resolves, the carried socket is the link's output, which the state already knows.
 */
class DetachingFlow extends ClassicFlow<Schemes, []> {
  override getPickedSocket(): SocketData | undefined {
    const state = this.currentState as unknown as { initial?: SocketData; outputSocket?: SocketData };
    return state.initial ?? state.outputSocket;
  }
}

function verdict(editor: NodeEditor<Schemes>, p: Omit<LinkProposal, 'sourceType' | 'targetType'>, replacesExisting: boolean): LinkVerdict {
  const source = editor.getNode(p.source);
  const target = editor.getNode(p.target);
  if (!source || !target) return { ok: false, reason: 'node not found' };
  return checkLink(
    { ...p, sourceType: source.outputs[p.sourceOutput]?.socket.type, targetType: target.inputs[p.targetInput]?.socket.type },
    editor.getConnections(),
    { replacesExisting },
  );
}

/**
 * Enforces the link rules on both paths into the editor (doc §B6). Dragging goes through ClassicFlow's
 * canMakeConnection, which runs before the flow removes the link already on the input, so a refused drop leaves
 * the graph untouched. Programmatic adds (paste, undo, import) pass only through the `connectioncreate` pipe, which
 * also refuses to replace an existing link.
 */
export function guardConnections(editor: NodeEditor<Schemes>, connection: ConnectionPlugin<Schemes, AreaExtra>, refuse: Refuse): void {
  // The id of the link the flow is adding right now: its input was just cleared by the flow itself.
  let interactive: string | null = null;

  editor.addPipe((ctx) => {
    if (ctx.type !== 'connectioncreate') return ctx;
    const c = ctx.data;
    const v = verdict(editor, c, c.id === interactive);
    if (!v.ok) {
      refuse(v.reason);
      return undefined;
    }
    return ctx;
  });

  const ends = (a: SocketData, b: SocketData) => {
    const pair = getSourceTarget(a, b);
    if (!pair) return null;
    const [source, target] = pair as [SocketData, SocketData];
    return { source: source.nodeId, sourceOutput: source.key, target: target.nodeId, targetInput: target.key };
  };

  connection.addPreset(() => new DetachingFlow({
    canMakeConnection(from, to) {
      const p = ends(from, to);
      // Same side (or the picked socket itself): not an attempt yet; ClassicFlow keeps the link in hand.
      if (!p) return false;
      const v = verdict(editor, p, true);
      if (!v.ok) {
        refuse(v.reason);
        // A refused drop would otherwise leave the pseudo-link stuck to the pointer.
        setTimeout(() => connection.drop(), 0);
        return false;
      }
      return true;
    },
    makeConnection(from, to) {
      const p = ends(from, to);
      const source = p && editor.getNode(p.source);
      const target = p && editor.getNode(p.target);
      if (!p || !source || !target) return false;
      const link = new FuseConnection(source, p.sourceOutput, target, p.targetInput);
      interactive = link.id;
      void editor.addConnection(link).finally(() => {
        if (interactive === link.id) interactive = null;
      });
      return true;
    },
  }));
}
