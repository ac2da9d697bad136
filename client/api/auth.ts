const KEY = 'fusegraph.token';
let cached: string | null | undefined;

/**
 * The server's token, when it was started with one (anything but loopback needs it). It is handed over once as
 * `?token=` in the editor's URL, kept for the tab, and removed from the address bar so it is not bookmarked or shared.
 */
export function apiToken(): string | null {
  if (cached !== undefined) return cached;
  const url = new URL(location.href);
  const given = url.searchParams.get('token');
  if (given) {
    sessionStorage.setItem(KEY, given);
    url.searchParams.delete('token');
    history.replaceState(history.state, '', url);
  }
  cached = given ?? sessionStorage.getItem(KEY);
  return cached;
}

export function authHeaders(): Record<string, string> {
  const token = apiToken();
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** For what the browser fetches by itself (img src, downloads, the WebSocket), which cannot carry a header. */
export function withToken(url: string): string {
  const token = apiToken();
  return token ? `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}` : url;
}
