import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { endStraysOnce, oomKills, oomKillSeen, parentMarker, type OomKills } from './child-lifecycle.js';
import { envWithTmp, privateTmp } from './private-tmp.js';
import type { OutputSlice, SlicedTensor, TensorType, WireTensor, WorkerRequest, WorkerResponse } from './wire.js';

/**
 * Where a model's ONNX Runtime sessions live (see session-worker.js):
 * - `process` (default): a child process per loaded model. Ending it returns every byte the sessions used to the
 *   system (the C allocator of a long-lived process keeps freed heap), a cancelled call is stopped at once (the process
 *   is killed, where a thread would have to finish its call), and a failure that ends a process — an allocation
 *   V8 cannot survive, the system's OOM killer, a crash in native code — ends only that model's process, never the
 *   server. It costs a copy of each call's feeds and outputs through a pipe, and on CUDA one context per model.
 * - `thread`: a worker thread in the server's process. Tensors move without a copy; a cancelled call keeps its
 *   thread busy until it returns, and an out-of-memory abort inside onnxruntime-node ends the server.
 */
export type SessionIsolation = 'process' | 'thread';

export const SESSION_ISOLATIONS: readonly SessionIsolation[] = ['process', 'thread'];

const WORKER_SCRIPT = new URL('./session-worker.js', import.meta.url);

/**
 * How a worker ended, for the client (nodes/protocol.ts RUN_ERROR_CODES): `out_of_memory` when it said so or the
 * kernel's OOM killer counted a kill as it died, `session_killed` for a signal sent from outside (SIGKILL with no OOM
 * kill counted, SIGTERM, …), `session_crashed` for a crash (SIGSEGV, SIGABRT, …) or an exit; null when this server
 * ended it.
 */
export type ExitCode = 'out_of_memory' | 'session_killed' | 'session_crashed' | null;

/** What the owner of a channel hears from it. */
export interface ChannelEvents {
  message(res: WorkerResponse): void;
  /** The worker is gone (ended, crashed or killed); `why` says how, with its last error output for a process. */
  exit(why: string, code: ExitCode): void;
}

/** One session worker, thread or process, as SessionHost drives it. */
export interface SessionChannel {
  /** False once the worker is known to be gone (a process's channel closes before its exit is reported). */
  readonly alive: boolean;
  post(req: WorkerRequest, transfer: readonly ArrayBuffer[]): void;
  /** Keeps the server's event loop alive while calls are waiting (a process that exits mid-call loses them). */
  ref(): void;
  unref(): void;
  /**
   * Ends the worker without losing the process: a process is killed at once; a thread that may be inside
   * session.run() (terminating it there aborts the whole server) is told to close its sessions and ends after the
   * call it is computing returns.
   */
  stop(): void;
  /**
   * Ends the worker once SessionHost has had it close its sessions (a thread then ends by itself, a process is
   * killed); resolves once it has exited.
   */
  close(): Promise<void>;
  /** Resolves once the worker has exited, however it ended. */
  readonly exited: Promise<void>;
  /** The session process's pid (for SessionHost's look at its progress in /proc); undefined for a thread. */
  readonly pid: number | undefined;
}

/**
 * One lock for every session worker thread of the process (see `exclusive` in session-worker.js): onnxruntime-node runs
 * all WebGPU sessions of a process on one WebGPU context, which is not thread-safe, so the threads take turns on it.
 * 0 = free, else the threadId of the worker holding it. Session processes each have their own context and need none.
 */
const gpuLock = new Int32Array(new SharedArrayBuffer(4));

/** Request id of the close message that ends a stopped worker thread (no caller waits for its answer). */
const STOP_ID = 0;

export function openChannel(isolation: SessionIsolation, on: ChannelEvents): SessionChannel {
  return isolation === 'process' ? processChannel(on) : threadChannel(on);
}

function threadChannel(on: ChannelEvents): SessionChannel {
  const worker = new Worker(WORKER_SCRIPT, { workerData: { gpuLock } });
  const threadId = worker.threadId;
  worker.unref();
  worker.on('message', (res: WorkerResponse) => {
    if (res.id !== STOP_ID) on.message(res);
  });
  let error = '';
  worker.on('error', (err: Error) => (error = err.message));
  let alive = true;
  const exited = new Promise<void>((resolve) =>
    worker.once('exit', (code) => {
      alive = false;
      // A worker that dies while holding the WebGPU lock (an uncaught error mid-call) must not block the others forever.
      if (Atomics.compareExchange(gpuLock, 0, threadId, 0) === threadId) Atomics.notify(gpuLock, 0);
      on.exit(`session worker exited (code ${code})${error ? `: ${error}` : ''}`, 'session_crashed');
      resolve();
    }),
  );
  return {
    get alive() {
      return alive;
    },
    exited,
    pid: undefined,
    post: (req, transfer) => worker.postMessage(req, transfer),
    ref: () => worker.ref(),
    unref: () => worker.unref(),
    stop: () => {
      worker.ref(); // a process that exited while the thread is still inside session.run() would abort
      worker.postMessage({ op: 'close', id: STOP_ID } satisfies WorkerRequest);
    },
    // The worker ends by itself once it has closed its sessions (session-worker.js): SessionHost.close() asked it to.
    close: () => {
      worker.ref(); // until its exit is heard
      return exited;
    },
  };
}

const ARRAY_OF: Readonly<Record<TensorType, new (buffer: ArrayBuffer) => WireTensor['data']>> = {
  float32: Float32Array, float16: Uint16Array, int32: Int32Array, int64: BigInt64Array,
};

/**
 * Puts a session process's sliced outputs back together (see `inSlices` in session-worker.js): each one is allocated
 * here, whole, when its first slice comes; if that fails, the answer becomes the allocation's out-of-memory error and
 * the server lives. Returns the answer once it is complete, else null.
 */
function joiner(): (m: WorkerResponse | OutputSlice) => WorkerResponse | null {
  const pending = new Map<number, { error: string | null; outputs: Map<string, Uint8Array> }>();
  return (m) => {
    if ('slice' in m) {
      let answer = pending.get(m.id);
      if (!answer) pending.set(m.id, (answer = { error: null, outputs: new Map() }));
      if (answer.error !== null) return null;
      let bytes = answer.outputs.get(m.slice);
      if (!bytes) {
        try {
          bytes = new Uint8Array(m.total);
        } catch (err) {
          answer.error = (err as Error).message;
          answer.outputs.clear();
          return null;
        }
        answer.outputs.set(m.slice, bytes);
      }
      bytes.set(m.bytes, m.at);
      return null;
    }
    const answer = pending.get(m.id);
    if (!answer) return m;
    pending.delete(m.id);
    if (answer.error !== null) return { id: m.id, ok: false, error: answer.error };
    if (!m.ok) return m;
    const result: Record<string, unknown> = { ...(m.result as Record<string, unknown>) };
    for (const [name, bytes] of answer.outputs) {
      const t = result[name] as SlicedTensor;
      result[name] = { type: t.type, dims: t.dims, data: new ARRAY_OF[t.type](bytes.buffer as ArrayBuffer) } satisfies WireTensor;
    }
    return { ...m, result };
  };
}

/** The end of a crashed session process's error output kept to say why it ended (V8's report of a fatal error, whose
 * native stack trace alone takes a few KiB, fits). */
const STDERR_TAIL = 16 * 1024;

/**
 * What a session process said last, for the error of the calls it took with it: V8's `FATAL ERROR` line when it
 * wrote one (its out-of-memory reports are recognised by out-of-memory.ts), else its last three lines, without the
 * native stack frames, GC traces and banners that follow such a report.
 */
function lastWords(tail: string): string {
  const noise = /^\s*\d+: 0x[0-9a-f]+|^<---.*--->$|^----- .* -----$|^\[\d+:0x[0-9a-f]+\]/;
  const lines = tail.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !noise.test(l));
  const fatal = lines.filter((l) => l.startsWith('FATAL ERROR:')).at(-1);
  return fatal ?? lines.slice(-3).join(' | ');
}

/** Signals that only someone else sends (a person, a supervisor, the OOM killer); any other one is a crash. */
const KILL_SIGNALS = new Set<string>(['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT']);

/**
 * Why a session process that this server did not end is gone. A SIGKILL is the kernel's OOM killer only when its
 * counter of OOM kills (the memory cgroup's, else the system's) rose since the last call was sent: a `kill -9` from
 * anyone else is said to be one.
 */
export function exitReason(code: number | null, signal: string | null, before: OomKills, after: OomKills): { how: string; code: ExitCode } {
  if (signal === 'SIGKILL') {
    const seen = oomKillSeen(before, after);
    if (seen === 'cgroup') return { how: 'ran out of memory (killed by the kernel\'s OOM killer: SIGKILL, and the memory cgroup counted an OOM kill)', code: 'out_of_memory' };
    if (seen === 'system') return { how: 'ran out of memory (killed by the kernel\'s OOM killer: SIGKILL, and the system counted an OOM kill)', code: 'out_of_memory' };
    const why = seen === 'none' ? 'not by this server, and the kernel counted no OOM kill' : 'not by this server; whether by the kernel\'s OOM killer is unknown here';
    return { how: `was killed by SIGKILL (${why})`, code: 'session_killed' };
  }
  if (signal) return { how: `was ended by ${signal}`, code: KILL_SIGNALS.has(signal) ? 'session_killed' : 'session_crashed' };
  return { how: `exited (code ${code})`, code: 'session_crashed' };
}

function processChannel(on: ChannelEvents): SessionChannel {
  // Children a previous server left behind go before this one's first starts (child-lifecycle.ts).
  endStraysOnce();
  // Plain JavaScript: no TypeScript loader (the server's own execArgv) is needed, and none slows the start.
  // Its own TMPDIR, removed once it has ended (private-tmp.ts): ONNX Runtime leaves a mat-debug-<pid>.log there.
  const tmp = privateTmp('fusegraph-session-');
  let child;
  try {
    child = fork(fileURLToPath(WORKER_SCRIPT), [], {
      // FUSEGRAPH_PARENT: the child's watchdog (parent-watchdog.js) ends it with this process; a restart finds strays by it.
      serialization: 'advanced', execArgv: [], stdio: ['ignore', 'inherit', 'pipe', 'ipc'], env: { ...envWithTmp(tmp), ...parentMarker() },
    });
  } catch (err) {
    tmp.remove();
    throw err;
  }
  child.once('exit', tmp.remove);
  let tail = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    process.stderr.write(chunk);
    tail = (tail + chunk.toString('utf8')).slice(-STDERR_TAIL);
  });
  let killed = false;
  // The OOM killer's counters when the last request was sent (see exitReason).
  let oomBefore = oomKills();
  // The process, its IPC channel and its error output each hold the server's event loop apart: 'close' (below) needs
  // all three to end, so whoever waits for it refs all three: held by the process alone, nothing holds the loop
  // between the process being reaped and its pipes' ends being read, and a close() can be left pending forever.
  const stderr = child.stderr as unknown as { ref(): void; unref(): void };
  const ref = (): void => {
    child.ref();
    child.channel?.ref();
    stderr.ref();
  };
  const unref = (): void => {
    child.unref();
    child.channel?.unref();
    stderr.unref();
  };
  unref();
  const join = joiner();
  child.on('message', (m: WorkerResponse | OutputSlice) => {
    oomBefore = oomKills(); // it lived until now: a later SIGKILL is compared with the counters from here on
    const res = join(m);
    if (res) on.message(res);
  });
  // A failed send (the process already gone) is reported by the exit below.
  child.on('error', () => undefined);
  // 'close', not 'exit': it comes once the error output is read to its end, whose last lines say why it ended.
  const exited = new Promise<void>((resolve) =>
    child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
      tmp.remove(); // again after its pipes closed (a fork that failed to start has no 'exit')
      // The kernel's OOM killer, which the process invites (oom_score_adj 1000 in session-worker.js) so that the server
      // is spared, sends a SIGKILL; so does anyone's `kill -9`: the OOM kill counters tell them apart (exitReason).
      const { how, code: exitCode } = killed && signal === 'SIGKILL'
        ? { how: 'was ended by SIGKILL', code: null }
        : exitReason(code, signal, oomBefore, oomKills());
      const said = lastWords(tail);
      on.exit(`session process ${how}${said ? `: ${said}` : ''}`, exitCode);
      resolve();
    }),
  );
  const kill = (): void => {
    killed = true;
    ref(); // until its exit is heard
    child.kill('SIGKILL');
  };
  return {
    get alive() {
      return child.connected;
    },
    exited,
    pid: child.pid,
    post: (req) => {
      if (!child.connected) return;
      oomBefore = oomKills();
      child.send(req);
    },
    ref,
    unref,
    stop: kill,
    close: async () => {
      // The system reclaims everything the sessions held (host and GPU memory) when the process ends.
      if (child.exitCode === null && child.signalCode === null) kill();
      else ref(); // it ended by itself: its pipes may still be open
      await exited;
    },
  };
}
