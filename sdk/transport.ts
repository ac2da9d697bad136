/** The part of the WebSocket API the client uses; both the browser's WebSocket and the `ws` package provide it. */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open' | 'close' | 'error', listener: () => void): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
}

export const OPEN = 1;

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

/**
 * Opens a socket and waits until it is open. In Node the `ws` package sends the token as a header (so the socket
 * may steer the queue at once); a browser can only put it in the URL, and the client then presents it in an
 * `auth` frame. Returns whether that frame is needed.
 */
export async function openSocket(
  url: string,
  token: string | undefined,
  onMessage: (data: unknown) => void,
): Promise<{ socket: SocketLike; needsAuth: boolean }> {
  let socket: SocketLike;
  let needsAuth = false;
  if (isNode) {
    // A variable specifier keeps browser bundlers from trying to bundle the Node-only package.
    const wsModule = 'ws';
    const { WebSocket } = (await import(wsModule)) as { WebSocket: new (url: string, opts: object) => SocketLike };
    socket = new WebSocket(url, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
  } else {
    const withToken = new URL(url);
    if (token !== undefined) withToken.searchParams.set('token', token);
    socket = new WebSocket(withToken) as unknown as SocketLike;
    needsAuth = token !== undefined;
  }
  // Listening from the start: the server's first frame (the snapshot) can arrive with the upgrade response,
  // before code awaiting this function runs.
  socket.addEventListener('message', (e) => onMessage(e.data));
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener('open', () => resolve());
    socket.addEventListener('error', () => reject(new Error(`could not connect to ${url}`)));
    socket.addEventListener('close', () => reject(new Error(`the server closed the connection to ${url}`)));
  });
  return { socket, needsAuth };
}
