import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import type { RunningServer } from '../../server/http/start.js';
import { REPO_ROOT } from '../helpers/graphs.js';
import { makeSandbox, startIn, type Sandbox } from '../server/helpers.js';

const run = promisify(execFile);

/** Runs an example the way its header says, against a real server on the demo models, with few steps. */
async function example(name: string, args: readonly string[]): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join('examples', name), ...args], {
    cwd: REPO_ROOT, timeout: 240_000,
  });
  return stdout;
}

async function pixels(file: string | Buffer): Promise<Buffer> {
  return sharp(file).raw().toBuffer();
}

describe('examples/ against the demo models', () => {
  let sandbox: Sandbox;
  let server: RunningServer;

  before(async () => {
    sandbox = await makeSandbox();
    server = await startIn(sandbox, { modelsRoot: path.join(REPO_ROOT, 'models') });
  });

  after(async () => {
    await server?.close();
    await sandbox?.remove();
  });

  it('batch-render: every prompt × seed, each a 32×32 PNG equal to the server\'s file', async () => {
    const out = path.join(sandbox.root, 'batch');
    const stdout = await example('batch-render.ts', [
      '--server', server.url, '--out', out, '--seeds', '0,1', '--steps', '4', 'a red star on the left', 'a blue circle in the center',
    ]);
    const files = (await readdir(out)).sort();
    assert.deepEqual(files, [
      'a-blue-circle-in-the-center_seed0.png', 'a-blue-circle-in-the-center_seed1.png',
      'a-red-star-on-the-left_seed0.png', 'a-red-star-on-the-left_seed1.png',
    ]);
    assert.equal(stdout.trim().split('\n').length, 4);
    const serverFiles = (await readdir(sandbox.outputRoot)).filter((f) => f.startsWith('fused'));
    const served = await Promise.all(serverFiles.map((f) => readFile(path.join(sandbox.outputRoot, f))));
    const images = await Promise.all(files.map((f) => readFile(path.join(out, f))));
    for (const image of images) {
      const meta = await sharp(image).metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ['png', 32, 32]);
      assert.ok(served.some((s) => s.equals(image)), 'written bytes are the server\'s output file');
    }
    assert.notDeepEqual(await pixels(images[2]!), await pixels(images[3]!), 'the seeds differ');
  });

  it('schedule-sweep: a contact sheet of general | t = 900 … 100 | cartoon', async () => {
    const sheet = path.join(sandbox.root, 'sweep', 'sheet.png');
    const stdout = await example('schedule-sweep.ts', ['--server', server.url, '--out', sheet, '--steps', '10', '--scale', '2']);
    assert.match(stdout, /t>900 \| t>800 .* t>100 \| cartoon/);
    const meta = await sharp(sheet).metadata();
    const tiles = 11;
    assert.deepEqual([meta.width, meta.height], [tiles * 64 + (tiles - 1) * 4, 64]);
    const tile = (i: number) => sharp(sheet).extract({ left: i * 68, top: 0, width: 64, height: 64 }).raw().toBuffer();
    assert.notDeepEqual(await tile(0), await tile(10), 'general and cartoon differ');
    assert.notDeepEqual(await tile(1), await tile(9), 'SNB until t = 900 and until t = 100 differ');
  });
});
