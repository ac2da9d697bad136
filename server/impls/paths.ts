import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, realpath, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isConfined } from '../engine/validate.js';

/**
 * Resolves a user path inside its root, or undefined when it escapes (lexically). Model folders use it as is and
 * may be symlinks that lead anywhere: users commonly link a models folder from another disk or share it between
 * tools, and the models root is the server owner's, not the client's (docs/api.md, "File roots").
 */
export function resolveInRoot(root: string, rel: string): string | undefined {
  if (!isConfined(rel)) return undefined;
  const abs = path.resolve(root, rel);
  const back = path.relative(root, abs);
  return back.startsWith('..') || path.isAbsolute(back) ? undefined : abs;
}

/** Thrown when a path under input/ or output/ leads out of its root through a symlink. */
export class OutsideRootError extends Error {
  constructor(rel: string, rootName: string) {
    super(`"${rel}" leads out of the ${rootName} folder through a symlink`);
    this.name = 'OutsideRootError';
  }
}

/**
 * Reads a file of the input root. Symlinks are resolved and the target must still be inside the root, and the
 * resolved file is opened with O_NOFOLLOW, so neither a link nor one swapped in afterwards can read outside it.
 */
export async function readInRoot(root: string, rel: string, rootName: string): Promise<Buffer> {
  const abs = resolveInRoot(root, rel);
  if (!abs) throw new OutsideRootError(rel, rootName);
  const [realRoot, real] = await Promise.all([realpath(root), realpath(abs)]);
  const back = path.relative(realRoot, real);
  if (back.startsWith('..') || path.isAbsolute(back)) throw new OutsideRootError(rel, rootName);
  const handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/**
 * Replaces `name` directly inside `dir` with `bytes`: written to a fresh temporary file (exclusive create) and
 * renamed over the name. A rename replaces a symlink instead of writing through it, and a reader never sees half
 * a file.
 */
export async function replaceFile(dir: string, name: string, bytes: Uint8Array): Promise<string> {
  const file = path.join(dir, name);
  const tmp = path.join(dir, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
  await writeFile(tmp, bytes, { flag: 'wx' });
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return file;
}
