import { Presets } from 'rete-react-plugin';
import { SOCKET_COLORS } from '../../../nodes/socket-types.js';
import type { FuseConnection, FuseNode } from '../schemes.js';

type Props = { data: FuseConnection<FuseNode, FuseNode> & { isPseudo?: boolean } };

/**
 * A link coloured like its source socket. The pseudo-connection drawn while dragging has no type of its own; it
 * takes the picked socket's colour from a CSS variable the editor sets on pick.
 */
export function ConnectionView({ data }: Props) {
  const { path } = Presets.classic.useConnection();
  if (!path) return null;
  const colour = data.socketType ? SOCKET_COLORS[data.socketType] : 'var(--fg-pick-colour, #9aa4b2)';
  return (
    <svg className={`fg-connection${data.isPseudo ? ' fg-connection-pseudo' : ''}`} data-type={data.socketType}>
      <path d={path} style={{ stroke: colour }} />
    </svg>
  );
}
