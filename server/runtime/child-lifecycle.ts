import { readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The life of the child processes that run ONNX Runtime for the server (session processes, session-channel.ts; the
 * activation probe, activation-profiler.ts), from the server's side (issue 27):
 * - each child carries `FUSEGRAPH_PARENT=<pid>:<start time>` in its environment, and a watchdog thread in it
 *   (parent-watchdog.js) kills it once its parent is gone, even while its main thread is inside a native call;
 * - a starting server ends the children a previous instance left behind (`endStrays`): those that still carry the
 *   marker but whose parent is gone (a child that was stopped, or blocked, when its server died);
 * - /proc tells whether a child makes progress (`procProgress`, for SessionHost's hang detection) and whether the
 *   kernel's OOM killer has killed something (`oomKills`, to say why a child died of SIGKILL).
 * Linux only: elsewhere each function answers that it does not know.
 */

/** The environment variable a child learns its parent's identity from. */
export const PARENT_ENV = 'FUSEGRAPH_PARENT';

/** The scripts the server runs as children: only processes running one of these are ever ended by `endStrays`. */
const CHILD_SCRIPTS = ['session-worker.js', 'activation-probe.js'];

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
function statFields(pid: number | string): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** The start time of a process, in clock ticks after boot (/proc/<pid>/stat field 22), or null. */
function startTime(pid: number | 'self'): string | null {
  return statFields(pid)?.[19] ?? null;
}

/** The environment entries that tell a child who started it (see parent-watchdog.js). */
export function parentMarker(): Record<string, string> {
  return { [PARENT_ENV]: `${process.pid}:${startTime('self') ?? '?'}` };
}

/** The identity `parentMarker` recorded, or null when the value is not one. */
export function parseMarker(value: string | undefined): { pid: number; start: string } | null {
  const m = /^(\d+):(\S+)$/.exec(value ?? '');
  return m ? { pid: Number(m[1]), start: m[2]! } : null;
}

function environOf(pid: number): Map<string, string> | null {
  try {
    // Another user's process (or one that just exited) cannot be read: it is no child of ours.
    const raw = readFileSync(`/proc/${pid}/environ`, 'utf8');
    return new Map(raw.split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  } catch {
    return null;
  }
}

/**
 * Kills the server's children whose server is gone: processes that carry the parent marker, run one of the child
 * scripts, and whose parent now is another process than the one that started them (the kernel re-parents an orphan
 * to init or a subreaper; a live parent keeps its children). Their private temporary folders go too. Never touches a
 * child whose parent lives (another server's, a test's), nor a process without the marker. Returns the pids killed.
 */
export function endStrays(): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const killed: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const env = environOf(pid);
    const marker = parseMarker(env?.get(PARENT_ENV));
    if (!env || !marker) continue;
    const fields = statFields(pid);
    if (!fields || Number(fields[1]) === marker.pid) continue; // its parent still lives
    let args: string[];
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!args.some((a) => CHILD_SCRIPTS.includes(path.basename(a)))) continue;
    try {
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      continue; // gone already, or not ours to signal
    }
    const tmp = env.get('FUSEGRAPH_PRIVATE_TMPDIR');
    if (tmp && tmp === env.get('TMPDIR') && /^fusegraph-(session|probe)-/.test(path.basename(tmp))) {
      try {
        rmSync(tmp, { recursive: true, force: true });
      } catch {
        // a leftover folder is harmless
      }
    }
  }
  return killed;
}

let swept = false;

/** `endStrays` once per server process: called before its first child starts (and by a starting server). */
export function endStraysOnce(log?: (message: string) => void): void {
  if (swept) return;
  swept = true;
  const killed = endStrays();
  if (killed.length) (log ?? ((m: string) => process.stderr.write(`${m}\n`)))(`ended ${killed.length} session or probe process(es) left behind by a server that is gone: ${killed.join(', ')}`);
}

/** What /proc says of a process's activity: its CPU time so far, and whether any of its threads runs or waits for I/O. */
export interface Progress {
  readonly ticks: number;
  readonly active: boolean;
  /** Stopped (SIGSTOP, a debugger): it cannot make progress. */
  readonly stopped: boolean;
  /** A zombie: it has exited, and its parent has not heard yet. */
  readonly ended: boolean;
}

export function procProgress(pid: number): Progress | null {
  const fields = statFields(pid);
  if (!fields) return null;
  // utime + stime (fields 14 and 15) count every thread of the process.
  const ticks = Number(fields[11]) + Number(fields[12]);
  const state = fields[0] ?? '';
  let active = false;
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const s = statFields(`${pid}/task/${task}`)?.[0];
      if (s === 'R' || s === 'D') active = true;
    }
  } catch {
    active = state === 'R' || state === 'D';
  }
  return { ticks, active, stopped: state === 'T' || state === 't', ended: state === 'Z' || state === 'X' };
}

/** The memory cgroup's file that counts OOM kills (v2 memory.events, v1 memory.oom_control), found once. */
let cgroupOomFile: string | null | undefined;

function findCgroupOomFile(): string | null {
  let lines: string[];
  try {
    lines = readFileSync('/proc/self/cgroup', 'utf8').split('\n');
  } catch {
    return null;
  }
  const candidates: string[] = [];
  for (const line of lines) {
    const [, controllers, where] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (where === undefined) continue;
    if (controllers === '') candidates.push(path.join('/sys/fs/cgroup', where, 'memory.events'), '/sys/fs/cgroup/memory.events');
    if (controllers!.split(',').includes('memory')) {
      candidates.push(path.join('/sys/fs/cgroup/memory', where, 'memory.oom_control'), '/sys/fs/cgroup/memory/memory.oom_control');
    }
  }
  return candidates.find((f) => counter(f) !== null) ?? null;
}

function counter(file: string): number | null {
  try {
    const m = /^oom_kill (\d+)$/m.exec(readFileSync(file, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** OOM kills counted so far: by the server's memory cgroup and by the whole system (/proc/vmstat); null if unknown. */
export interface OomKills {
  readonly cgroup: number | null;
  readonly system: number | null;
}

export function oomKills(): OomKills {
  if (cgroupOomFile === undefined) cgroupOomFile = os.platform() === 'linux' ? findCgroupOomFile() : null;
  return { cgroup: cgroupOomFile ? counter(cgroupOomFile) : null, system: counter('/proc/vmstat') };
}

/** What the counters say of a SIGKILL between `before` and `after`. */
export function oomKillSeen(before: OomKills, after: OomKills): 'cgroup' | 'system' | 'none' | 'unknown' {
  if (before.cgroup !== null && after.cgroup !== null && after.cgroup > before.cgroup) return 'cgroup';
  if (before.system !== null && after.system !== null && after.system > before.system) return 'system';
  return before.cgroup === null && before.system === null ? 'unknown' : 'none';
}
