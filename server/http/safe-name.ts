import { realpath, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { HttpError } from './http-error.js';

/** One path segment: no separators, no leading dot (so no "..", no dotfiles), nothing a shell or URL mangles. */
const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

export function checkFileName(name: string, extension: string): void {
  if (!SEGMENT.test(name) || !name.toLowerCase().endsWith(extension)) {
    throw new HttpError(400, 'bad_name', `"${name}" is not a valid ${extension} file name (one path segment: letters, digits, . _ -)`);
  }
}

/**
 * The absolute path of `name` directly inside `root`, after resolving symlinks, or a 404: a link that points
 * out of the root is treated as absent rather than followed.
 */
export async function fileInRoot(root: string, name: string): Promise<string> {
  const missing = new HttpError(404, 'not_found', `${name} not found`);
  let realRoot: string;
  let real: string;
  try {
    realRoot = await realpath(resolve(root));
    real = await realpath(resolve(root, name));
  } catch {
    throw missing;
  }
  if (dirname(real) !== realRoot) throw missing;
  const info = await stat(real).catch(() => null);
  if (!info?.isFile()) throw missing;
  return real;
}
