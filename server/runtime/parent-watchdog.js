// @ts-check
/**
 * The child side of child-lifecycle.ts: a child process the server started (a session process, the activation probe)
 * must die with its server, even by `kill -9`. Its main thread cannot be relied on to notice: inside a long native
 * ONNX Runtime call it sees neither its IPC channel nor its stdin close (seen: probes still growing minutes after
 * their server was killed, issue 27). So a small worker thread, which runs while the main thread is blocked, polls
 * the parent's pid; once the process has been re-parented (its server is gone) it removes the child's private
 * temporary folder (private-tmp.ts) and kills the process with SIGKILL.
 */
import { Worker } from 'node:worker_threads';

/** How often the watchdog looks, in ms: a child outlives its server by about this long. */
const POLL_MS = 100;

const WATCHDOG = `
const { workerData } = require('node:worker_threads');
const { rmSync } = require('node:fs');
const { parent, tmp, pollMs } = workerData;
setInterval(() => {
  if (process.ppid === parent) return;
  try {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  } catch {}
  process.kill(process.pid, 'SIGKILL');
}, pollMs);
`;

/**
 * Starts the watchdog. The parent is the one named in FUSEGRAPH_PARENT (child-lifecycle.ts), else the current parent;
 * a child whose parent is already gone when it starts ends at once.
 * @returns {Worker}
 */
export function watchParent() {
  const m = /^(\d+):/.exec(process.env.FUSEGRAPH_PARENT ?? '');
  const parent = m ? Number(m[1]) : process.ppid;
  const own = process.env.FUSEGRAPH_PRIVATE_TMPDIR;
  const tmp = own && own === process.env.TMPDIR ? own : null;
  const worker = new Worker(WATCHDOG, { eval: true, workerData: { parent, tmp, pollMs: POLL_MS }, resourceLimits: { maxOldGenerationSizeMb: 8 } });
  // It never keeps the process alive, and its failure (it cannot start for lack of memory) is no failure of the child.
  worker.unref();
  worker.on('error', () => undefined);
  return worker;
}
