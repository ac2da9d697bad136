import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { measureUnet, probeLayout } from '../../server/sd/activation-profiler.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import type { SdModel } from '../../server/sd/sd-model.js';
import { tinyWorkspace, type TinyWorkspace } from '../helpers/tiny-models.js';
import { processGone, sessionProcesses } from '../server/helpers.js';

/**
 * onnxruntime-node 1.30 opens `$TMPDIR/mat-debug-<pid>.log` (`/tmp/` without TMPDIR) in every process that creates a
 * session and leaves it behind: 421 files after one test session (issue 27). Session processes and the activation
 * probe get a temporary folder of their own as TMPDIR, removed when they end, killed or not.
 *
 * This file's own TMPDIR is a fresh folder, so that what the processes it starts leave behind is told apart from what
 * other test processes on the machine write to the system's temporary folder.
 */
const SYSTEM_TMP = os.tmpdir();
const root = mkdtempSync(path.join(SYSTEM_TMP, 'fusegraph-tmpdir-test-'));
process.env.TMPDIR = root;
// onnxruntime-node writes no such log when CI is set (measured: CI=true, no mat-debug file): without it, the test could
// not see where the log goes.
delete process.env.CI;

const leftovers = (): string[] => readdirSync(root).filter((f) => /^mat-debug-/.test(f) || /^fusegraph-(session|probe)-/.test(f));

async function envOf(pid: number): Promise<Record<string, string>> {
  const raw = await readFile(`/proc/${pid}/environ`, 'utf8');
  return Object.fromEntries(raw.split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

async function gone(file: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`${file} is still there after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('child processes running ONNX Runtime get a temporary folder of their own, removed when they end (issue 27)', { skip: process.platform !== 'linux' && 'reads /proc' }, () => {
  let ws: TinyWorkspace;
  let manager: ModelManager;
  let model: SdModel;
  const pids: number[] = [];
  before(async () => {
    ws = await tinyWorkspace({ tiny: {} });
    manager = new ModelManager({ isolation: 'process', threads: 1 });
    model = await manager.acquire(path.join(ws.models, 'tiny'), 'cpu');
  });
  after(async () => {
    await manager?.dispose();
    await ws?.cleanup();
    rmSync(root, { recursive: true, force: true });
  });

  /** The session process now serving the model, its private folder, and that ONNX Runtime wrote its log there. */
  const current = async (): Promise<{ pid: number; dir: string }> => {
    const [pid, ...more] = await sessionProcesses(process.pid);
    assert.ok(pid !== undefined && more.length === 0, 'one model, one session process');
    pids.push(pid);
    const dir = (await envOf(pid)).TMPDIR ?? '';
    assert.equal(path.dirname(dir), root, `TMPDIR ${dir} is a folder of its own`);
    assert.match(path.basename(dir), /^fusegraph-session-/);
    assert.ok(existsSync(path.join(dir, `mat-debug-${pid}.log`)), 'ONNX Runtime wrote its log into the private folder');
    return { pid, dir };
  };

  it('a session process killed with SIGKILL: its parent removes its folder, and the next call gets a new one', async () => {
    await model.encodeText([Array.from({ length: 77 }, () => 0)]);
    const first = await current();
    process.kill(first.pid, 'SIGKILL');
    await processGone(first.pid);
    await gone(first.dir);
    await model.encodeText([Array.from({ length: 77 }, () => 0)]); // a new process reopens the sessions
    const second = await current();
    assert.notEqual(second.pid, first.pid);
    assert.notEqual(second.dir, first.dir);
  });

  it('the activation probe leaves nothing behind', async () => {
    const layout = probeLayout(model.folder, model.info);
    await measureUnet(model.folder.parts.unet, { ...layout, fixedSide: layout.firstSide });
    assert.deepEqual(readdirSync(root).filter((f) => /^fusegraph-probe-/.test(f) || /^mat-debug-/.test(f)), []);
  });

  it('a model released normally: its folder is gone, and no mat-debug log of any of these processes remains', async () => {
    const { dir } = await current();
    manager.release(model);
    assert.equal(await manager.releaseIdle(), 1);
    assert.ok(!existsSync(dir), `${dir} was removed`);
    assert.deepEqual(leftovers(), []);
    for (const pid of pids) assert.ok(!existsSync(path.join(SYSTEM_TMP, `mat-debug-${pid}.log`)), `no /tmp log of ${pid}`);
  });
});
