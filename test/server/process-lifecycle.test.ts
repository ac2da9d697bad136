import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Graph } from '../../nodes/graph-format.js';
import { writeTinyModel } from '../../tools/tiny-models/make-tiny-model.js';
import { childProcesses } from '../../tools/proc.js';
import { REPO_ROOT, TOKENIZER_FIXTURE, txt2imgGraph } from '../helpers/graphs.js';
import {
  api, gate, gateWait, isTerminal, makeSandbox, processGone, serveProcess, sessionProcesses, WsClient, type Sandbox,
} from './helpers.js';

/**
 * Issue 27, items 6 and 7: every child process the server starts dies with it, even inside a long call, and a
 * restarted server ends the ones that could not (a stopped one); a session process that makes no progress is killed
 * and fails its run with `session_hung`, and the queue goes on.
 */
interface RunBody { status: string; error: { code?: string; node: string | null; message: string } | null }

async function envOf(pid: number): Promise<Record<string, string>> {
  const raw = await readFile(`/proc/${pid}/environ`, 'utf8');
  return Object.fromEntries(raw.split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

const stateOf = async (pid: number): Promise<string | null> => {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  return stat === null ? null : stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!;
};

/** Polls `find` until it gives a value, within a deadline. */
async function poll<T>(find: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await find();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('process lifecycle: children die with their server, hung session processes are killed (issue 27)', { skip: process.platform !== 'linux' && 'reads /proc' }, () => {
  let sandbox: Sandbox;
  before(async () => {
    sandbox = await makeSandbox();
    // One call at 512×512 (256² latent) takes about a second here: long enough to act inside it.
    await writeTinyModel(path.join(sandbox.modelsRoot, 'slow'), { tokenizerDir: TOKENIZER_FIXTURE, vaeFactor: 2, unetWidth: 96, unetDepth: 6 });
  });
  after(() => sandbox?.remove());

  const slow = (size: number, steps: number): Graph => txt2imgGraph('slow', { size, steps });

  /** `fusegraph serve` in its own process, with a WebSocket client and helpers to run graphs on it. */
  const serve = async (env: Record<string, string> = {}) => {
    // Admission's estimate for the slow model's 512² is far above this machine: the calls themselves are small.
    const s = await serveProcess(sandbox, { env, args: ['--max-run-memory', String(2 ** 50)] });
    const ws = await WsClient.connect(s.url, '?client_id=lc');
    const submit = async (graph: Graph): Promise<string> => {
      const post = await api<{ run_id: string }>(s.url, '/api/runs', { body: { graph, client_id: 'lc' } });
      assert.equal(post.status, 202, JSON.stringify(post.body));
      return post.body.run_id;
    };
    const finish = async (runId: string): Promise<RunBody> => {
      await ws.waitFor(isTerminal(runId), 120_000, `the end of run ${runId}`);
      return (await api<RunBody>(s.url, `/api/runs/${runId}`)).body;
    };
    /** Starts a 3-step 512² run and resolves once its first UNet call is under way, with its id and session process. */
    const insideFirstCall = async (): Promise<{ runId: string; pid: number }> => {
      const { passed } = await gate(s.url, { hold: true, release_steps: 1 });
      const runId = await submit(slow(512, 3));
      await gateWait(s.url, { passed: passed + 1 });
      const pids = await sessionProcesses(s.child.pid!);
      assert.equal(pids.length, 1, 'one model, one session process');
      return { runId, pid: pids[0]! };
    };
    const kill9 = async (): Promise<void> => {
      ws.ws.terminate();
      s.child.kill('SIGKILL');
      await s.exited;
    };
    return { ...s, ws, submit, finish, insideFirstCall, kill9 };
  };

  it('a server killed with kill -9 inside a UNet call takes its session process and its TMPDIR with it', async () => {
    const s = await serve();
    try {
      const { pid } = await s.insideFirstCall();
      const env = await envOf(pid);
      assert.equal(env.FUSEGRAPH_PARENT?.split(':')[0], String(s.child.pid), 'the child knows its parent');
      await s.kill9();
      await processGone(pid, 30_000);
      assert.ok(!existsSync(env.TMPDIR!), 'its private temporary folder is gone');
    } finally {
      s.child.kill('SIGKILL');
    }
  });

  it('a restarted server ends the stopped session process a killed one left behind', async () => {
    const first = await serve();
    let stray: number | undefined;
    try {
      const done = await first.finish(await first.submit(slow(32, 2)));
      assert.equal(done.status, 'done', JSON.stringify(done.error));
      [stray] = await sessionProcesses(first.child.pid!);
      assert.ok(stray !== undefined);
      // Stopped, its watchdog cannot run: it outlives its server.
      process.kill(stray, 'SIGSTOP');
      await poll(async () => ((await stateOf(stray!)) === 'T' ? true : undefined), 'stopped session process');
      await first.kill9();
      assert.equal(await stateOf(stray), 'T', 'the stopped session process outlived its server');
    } finally {
      first.child.kill('SIGKILL');
    }
    const second = await serve();
    try {
      // Before its first child starts, the new server ends its predecessor's strays.
      const done = await second.finish(await second.submit(slow(32, 2)));
      assert.equal(done.status, 'done', JSON.stringify(done.error));
      await processGone(stray, 30_000);
    } finally {
      try {
        process.kill(stray, 'SIGKILL');
      } catch {
        // ended, as it should be
      }
      await gate(second.url, { hold: false }).catch(() => undefined);
      await second.ws.close();
      second.child.kill('SIGKILL');
      await second.exited;
    }
  });

  it('a session process stopped (SIGSTOP) inside a call is killed after the hang limit: the run fails session_hung, the queue goes on', async () => {
    // The floor of the hang limit, lowered for the test (the default is a minute; see SessionHost).
    const s = await serve({ FUSEGRAPH_SESSION_HANG_MS: '1000' });
    try {
      const { runId, pid } = await s.insideFirstCall();
      process.kill(pid, 'SIGSTOP');
      const next = await s.submit(slow(32, 2));
      assert.equal((await api<RunBody>(s.url, `/api/runs/${next}`)).body.status, 'queued', 'the next run waits behind the hung one');
      const r = await s.finish(runId);
      assert.equal(r.status, 'error');
      assert.equal(r.error?.code, 'session_hung', JSON.stringify(r.error));
      assert.equal(r.error?.node, 'eps');
      assert.match(r.error!.message, /session process made no progress .* and was killed/);
      await processGone(pid, 30_000);
      await gate(s.url, { hold: false });
      const n = await s.finish(next);
      assert.equal(n.status, 'done', JSON.stringify(n.error));
      const now = await sessionProcesses(s.child.pid!);
      assert.equal(now.length, 1);
      assert.notEqual(now[0], pid, 'a new session process serves the next run');
      await s.ws.close();
    } finally {
      s.child.kill('SIGKILL');
      await s.exited;
    }
  });

  it('the activation probe and the session process die with a parent killed with kill -9 while the probe measures', async () => {
    const script = path.join(sandbox.root, 'probe-parent.mts');
    const url = (p: string): string => pathToFileURL(path.join(REPO_ROOT, p)).href;
    await writeFile(script, `
      import { ModelManager } from ${JSON.stringify(url('server/sd/model-manager.ts'))};
      import { measureUnet, probeLayout } from ${JSON.stringify(url('server/sd/activation-profiler.ts'))};
      const manager = new ModelManager({ threads: 1, isolation: 'process' });
      const model = await manager.acquire(${JSON.stringify(path.join(sandbox.modelsRoot, 'slow'))}, 'cpu');
      const layout = probeLayout(model.folder, model.info);
      process.stdout.write('probing\\n');
      await measureUnet(model.folder.parts.unet, { ...layout, fixedSide: 256 });
      process.stdout.write('measured\\n');
    `);
    const parent = spawn(process.execPath, ['--import', 'tsx', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    parent.stdout.on('data', (d: Buffer) => (out += String(d)));
    try {
      const children = await poll(async () => {
        assert.ok(!out.includes('measured'), 'the probe ended before it was seen');
        const c = await childProcesses(parent.pid!).catch(() => []);
        const probe = c.find((p) => p.cmdline.includes('activation-probe.js'));
        const session = c.find((p) => p.cmdline.includes('session-worker.js'));
        return probe && session ? { probe: probe.pid, session: session.pid } : undefined;
      }, 'activation probe', 60_000);
      const env = await envOf(children.probe);
      assert.equal(env.FUSEGRAPH_PARENT?.split(':')[0], String(parent.pid));
      parent.kill('SIGKILL');
      await processGone(children.probe, 30_000);
      await processGone(children.session, 30_000);
      assert.ok(!existsSync(env.TMPDIR!), 'the probe\'s private temporary folder is gone');
    } finally {
      parent.kill('SIGKILL');
    }
  });
});
