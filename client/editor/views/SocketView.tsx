import { SOCKET_COLORS } from '../../../nodes/socket-types.js';
import type { TypedSocket } from '../schemes.js';

/** A socket dot in its type's colour; the type name is the tooltip. */
export function SocketView({ data }: { data: TypedSocket }) {
  return <div className="fg-socket" title={data.type} style={{ background: SOCKET_COLORS[data.type] }} />;
}
