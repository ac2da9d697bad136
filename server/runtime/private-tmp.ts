import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * A temporary folder of a child process's own, for its TMPDIR. onnxruntime-node 1.30's library opens
 * `$TMPDIR/mat-debug-<pid>.log` (`/tmp/` when TMPDIR is unset) in every process that creates a session and leaves it
 * behind, empty: hundreds of them after a test session (issue 27). The child gets this folder as its TMPDIR, and its
 * parent removes the folder, with whatever the child left in it, once the child has ended, however it ended
 * (killed too: the parent calls `remove` on the child's exit or close).
 */
export interface PrivateTmp {
  readonly dir: string;
  /** Removes the folder and everything in it; safe to call more than once. */
  remove(): void;
}

export function privateTmp(prefix: string): PrivateTmp {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return {
    dir,
    remove: () => {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // nothing more to do: a leftover empty folder in the system's temporary folder is harmless
      }
    },
  };
}

/** The environment a child process with its own temporary folder starts with. */
export function envWithTmp(tmp: PrivateTmp, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  // FUSEGRAPH_PRIVATE_TMPDIR tells the child the folder is its own to remove when its server is gone.
  return { ...base, TMPDIR: tmp.dir, TMP: tmp.dir, TEMP: tmp.dir, FUSEGRAPH_PRIVATE_TMPDIR: tmp.dir };
}
