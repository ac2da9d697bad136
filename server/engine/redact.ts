/**
 * Makes a message safe to send to a client: a path under one of the run's roots becomes relative to it
 * ("models/tiny/unet/model.onnx"), any other absolute path is cut to its last segment ("…/ort.node"). Clients must
 * not learn the server's directory layout; the server log keeps the original text.
 */
export function redactPaths(text: string, roots: Readonly<Record<string, string>>): string {
  let out = text;
  // Longest roots first, so a root nested in another is matched as itself.
  for (const [name, root] of Object.entries(roots).sort((a, b) => b[1].length - a[1].length)) {
    if (root.length > 1) out = out.split(root).join(name);
  }
  return out.replace(/(^|[\s'"`(=:,[])((?:\/[^\s'"`()\],:/]+)+\/?)/g, (_m, lead: string, abs: string) => {
    const last = abs.replace(/\/$/, '').split('/').at(-1) ?? '';
    return `${lead}…/${last}`;
  });
}
