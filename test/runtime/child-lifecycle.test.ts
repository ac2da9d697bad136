import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, describe, it } from 'node:test';
import { endStrays, oomKillSeen, parentMarker, parseMarker, procProgress, PARENT_ENV } from '../../server/runtime/child-lifecycle.js';
import { exitReason } from '../../server/runtime/session-channel.js';
import { SessionError, sessionFailure } from '../../server/runtime/session-host.js';
import { NodeExecutionError } from '../../server/engine/errors.js';
import { toRunError } from '../../server/services/run-error.js';
import { REPO_ROOT } from '../helpers/graphs.js';
import { processGone } from '../server/helpers.js';

/**
 * Issue 27, items 6 and 8: the children that run ONNX Runtime die with their server even while their main thread is
 * blocked in a native call (a watchdog thread, server/runtime/parent-watchdog.js), a starting server ends the ones a
 * previous instance left behind and nothing else, and a session process's end is reported for what it was.
 */
const WATCHDOG = pathToFileURL(path.join(REPO_ROOT, 'server', 'runtime', 'parent-watchdog.js')).href;
const root = mkdtempSync(path.join(os.tmpdir(), 'fusegraph-lifecycle-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** Lines a process writes to its stdout, as they come. */
function lines(child: ChildProcess): (want: RegExp, timeoutMs?: number) => Promise<RegExpExecArray> {
  let out = '';
  const waiters: (() => void)[] = [];
  child.stdout!.on('data', (d: Buffer) => {
    out += String(d);
    for (const w of waiters.splice(0)) w();
  });
  return (want, timeoutMs = 20_000) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${String(want)} within ${timeoutMs} ms; got ${JSON.stringify(out)}`)), timeoutMs);
    const check = (): void => {
      const m = want.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      } else waiters.push(check);
    };
    check();
  });
}

/**
 * A parent process (killed by the test with SIGKILL) that starts `childSource` as a child with the parent marker and
 * a private TMPDIR, and prints the child's pid.
 */
function parentOf(childSource: string, name: string, marker = true): { parent: ChildProcess; read: ReturnType<typeof lines>; tmp: string } {
  const script = path.join(root, name);
  mkdirSync(path.dirname(script), { recursive: true });
  writeFileSync(script, childSource);
  const tmp = path.join(root, `fusegraph-session-${name.replaceAll('/', '-')}`);
  mkdirSync(tmp);
  const parentSource = `
    const { spawn } = require('node:child_process');
    const env = { ...process.env, TMPDIR: ${JSON.stringify(tmp)}, FUSEGRAPH_PRIVATE_TMPDIR: ${JSON.stringify(tmp)} };
    if (${marker}) env.${PARENT_ENV} = process.pid + ':x';
    const child = spawn(process.execPath, [${JSON.stringify(script)}], { env, stdio: ['ignore', 'inherit', 'inherit'] });
    process.stdout.write('child ' + child.pid + '\\n');
    setInterval(() => undefined, 1000);
  `;
  const parent = spawn(process.execPath, ['-e', parentSource], { stdio: ['ignore', 'pipe', 'inherit'] });
  return { parent, read: lines(parent), tmp };
}

const stateOf = (pid: number): string | null => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!;
  } catch {
    return null;
  }
};

describe('child processes die with their parent (issue 27, item 6)', { skip: process.platform !== 'linux' && 'reads /proc' }, () => {
  it('the watchdog kills a child whose main thread is blocked for good, once its parent is killed with SIGKILL, and removes its TMPDIR', async () => {
    // Atomics.wait blocks the main thread as a long native ONNX Runtime call does: no event, no exit handler runs.
    const { parent, read, tmp } = parentOf(`
      import { watchParent } from ${JSON.stringify(WATCHDOG)};
      setTimeout(() => undefined, 60_000); // the watchdog holds no event loop: this does until it is online
      watchParent().once('online', () => {
        process.stdout.write('blocked\\n');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
      });
    `, 'blocked.mjs');
    try {
      const pid = Number((await read(/child (\d+)\n/))[1]);
      await read(/blocked\n/);
      assert.notEqual(stateOf(pid), null, 'the child runs while its parent lives');
      parent.kill('SIGKILL');
      await processGone(pid, 20_000);
      assert.ok(!existsSync(tmp), 'its private temporary folder went with it');
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it('endStrays ends a stopped orphan session process (that no watchdog can run in) and nothing else', async () => {
    // A stray: a child running a script named session-worker.js, with the marker, stopped, whose parent is then killed.
    const stray = parentOf(`setInterval(() => undefined, 1000); process.stdout.write('up\\n');`, 'session-worker.js');
    // Not ours: an orphan with the marker that runs another script, and a child with no marker at all.
    const other = parentOf(`setInterval(() => undefined, 1000); process.stdout.write('up\\n');`, 'other.js');
    const unmarked = parentOf(`setInterval(() => undefined, 1000); process.stdout.write('up\\n');`, 'unmarked/session-worker.js', false);
    const pids: number[] = [];
    try {
      for (const p of [stray, other, unmarked]) {
        pids.push(Number((await p.read(/child (\d+)\n/))[1]));
        await p.read(/up\n/);
      }
      const [strayPid, otherPid, unmarkedPid] = pids as [number, number, number];
      process.kill(strayPid, 'SIGSTOP');
      // While its parent lives, a marked child is never a stray.
      assert.ok(!endStrays().includes(strayPid));
      for (const p of [stray, other, unmarked]) p.parent.kill('SIGKILL');
      for (const p of [stray, other, unmarked]) await new Promise((r) => (p.parent.exitCode !== null || p.parent.signalCode !== null ? r(null) : p.parent.once('exit', r)));
      assert.equal(stateOf(strayPid), 'T', 'the stopped stray outlived its parent');
      const killed = endStrays();
      assert.ok(killed.includes(strayPid), `the stray ${strayPid} was ended (${killed.join(', ')})`);
      assert.ok(!killed.includes(otherPid) && !killed.includes(unmarkedPid));
      await processGone(strayPid);
      assert.ok(!existsSync(stray.tmp), 'the stray\'s private temporary folder is gone');
      assert.notEqual(stateOf(otherPid), null, 'a process that runs no FuseGraph child script lives on');
      assert.notEqual(stateOf(unmarkedPid), null, 'a process without the marker lives on');
    } finally {
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      for (const p of [stray, other, unmarked]) p.parent.kill('SIGKILL');
    }
  });

  it('the marker names this process, and procProgress tells a stopped process from a running one', async () => {
    assert.equal(parseMarker(parentMarker()[PARENT_ENV])?.pid, process.pid);
    const child = spawn(process.execPath, ['-e', 'for (;;);'], { stdio: 'ignore' });
    try {
      const pid = child.pid!;
      const deadline = Date.now() + 20_000;
      let seen = procProgress(pid);
      while (!(seen && seen.ticks > 0 && seen.active)) {
        assert.ok(Date.now() < deadline, 'the busy child was never seen running');
        await new Promise((r) => setTimeout(r, 20));
        seen = procProgress(pid);
      }
      process.kill(pid, 'SIGSTOP');
      while (!procProgress(pid)?.stopped) {
        assert.ok(Date.now() < deadline, 'the child was never seen stopped');
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(procProgress(pid)?.active, false);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('how a session process ended, as the client hears it (issue 27, item 8)', () => {
  const none = { cgroup: 3, system: 7 };
  it('SIGKILL is out_of_memory only when an OOM kill was counted; else session_killed', () => {
    assert.equal(exitReason(null, 'SIGKILL', none, { cgroup: 4, system: 8 }).code, 'out_of_memory');
    assert.equal(exitReason(null, 'SIGKILL', { cgroup: null, system: 7 }, { cgroup: null, system: 8 }).code, 'out_of_memory');
    const killed = exitReason(null, 'SIGKILL', none, none);
    assert.equal(killed.code, 'session_killed');
    assert.match(killed.how, /^was killed by SIGKILL \(not by this server, and the kernel counted no OOM kill\)$/);
    const unknown = exitReason(null, 'SIGKILL', { cgroup: null, system: null }, { cgroup: null, system: null });
    assert.equal(unknown.code, 'session_killed');
    assert.match(unknown.how, /unknown/);
  });
  it('a crash is session_crashed, a signal from outside session_killed', () => {
    assert.deepEqual(exitReason(null, 'SIGSEGV', none, none), { how: 'was ended by SIGSEGV', code: 'session_crashed' });
    assert.equal(exitReason(null, 'SIGABRT', none, none).code, 'session_crashed');
    assert.equal(exitReason(null, 'SIGTERM', none, none).code, 'session_killed');
    assert.deepEqual(exitReason(3, null, none, none), { how: 'exited (code 3)', code: 'session_crashed' });
    assert.equal(oomKillSeen(none, none), 'none');
  });
  it('toRunError gives the session code with the node, and keeps out_of_memory for the OOM killer', () => {
    const at = (e: SessionError): NodeExecutionError => new NodeExecutionError('eps', 'PredictNoise', e.message, e);
    const killed = new SessionError('session process was killed by SIGKILL (not by this server, and the kernel counted no OOM kill)', undefined, 'session_killed');
    assert.equal(sessionFailure(at(killed)), 'session_killed');
    assert.deepEqual(toRunError(at(killed), (t) => t), {
      code: 'session_killed', node: 'eps', node_type: 'PredictNoise', message: `node "eps" (PredictNoise): ${killed.message}`,
    });
    const hung = new SessionError('session process made no progress …', undefined, 'session_hung');
    assert.equal(toRunError(at(hung), (t) => t).code, 'session_hung');
    const oom = new SessionError(`session process ${exitReason(null, 'SIGKILL', none, { cgroup: 4, system: 8 }).how}`, undefined, 'out_of_memory');
    const e = toRunError(at(oom), (t) => t);
    assert.equal(e.code, 'out_of_memory');
    assert.match(e.message, /^out of memory at node "eps"/);
  });
});
