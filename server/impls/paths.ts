import path from 'node:path';
import { isConfined } from '../engine/validate.js';

/**
 * Resolves a user path inside its root, or undefined when it escapes. Symlinks inside the root are followed on
 * purpose: users commonly link a models folder from another disk.
 */
export function resolveInRoot(root: string, rel: string): string | undefined {
  if (!isConfined(rel)) return undefined;
  const abs = path.resolve(root, rel);
  const back = path.relative(root, abs);
  return back.startsWith('..') || path.isAbsolute(back) ? undefined : abs;
}
