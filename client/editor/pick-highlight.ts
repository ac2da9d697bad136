import type { NodeEditor } from 'rete';
import type { ConnectionPlugin } from 'rete-connection-plugin';
import { SOCKET_COLORS } from '../../nodes/socket-types.js';
import type { AreaExtra, Schemes } from './schemes.js';

/**
 * While a link is being dragged, the sockets it may connect to light up and the others dim (rete has no such
 * feedback built in, doc §B6), and the dragged link takes its socket's colour.
 */
export function highlightCompatibleSockets(editor: NodeEditor<Schemes>, connection: ConnectionPlugin<Schemes, AreaExtra>, container: HTMLElement): () => void {
  const clear = () => {
    delete container.dataset.pickType;
    container.style.removeProperty('--fg-pick-colour');
    container.querySelectorAll('.fg-port-compatible').forEach((el) => el.classList.remove('fg-port-compatible'));
  };
  connection.addPipe((ctx) => {
    if (ctx.type === 'connectionpick') {
      clear();
      const { nodeId, side, key } = ctx.data.socket;
      const node = editor.getNode(nodeId);
      const type = (side === 'input' ? node?.inputs[key] : node?.outputs[key])?.socket.type;
      if (type) {
        container.dataset.pickType = type;
        container.style.setProperty('--fg-pick-colour', SOCKET_COLORS[type]);
        const other = side === 'input' ? 'output' : 'input';
        container.querySelectorAll(`.fg-port-${other}[data-type="${type}"]`).forEach((el) => {
          if (!el.closest(`[data-node-id="${CSS.escape(nodeId)}"]`)) el.classList.add('fg-port-compatible');
        });
      }
    } else if (ctx.type === 'connectiondrop') {
      clear();
    }
    return ctx;
  });
  // A flow that ends without a drop signal must not leave the canvas dimmed: once the pointer is up and no link is
  // in hand (a click-picked link stays in hand, drawn as the pseudo-link), the highlight goes.
  const up = () => {
    if (!container.dataset.pickType) return;
    requestAnimationFrame(() => {
      if (!container.querySelector('.fg-connection-pseudo')) clear();
    });
  };
  window.addEventListener('pointerup', up, true);
  return () => window.removeEventListener('pointerup', up, true);
}
