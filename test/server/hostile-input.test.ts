import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import sharp from 'sharp';
import WebSocket from 'ws';
import { REPO_ROOT, TOKENIZER_FIXTURE } from '../helpers/graphs.js';
import { encodePngWithMetadata } from '../../server/sd/png-meta.js';
import { writeTinyModel } from '../../tools/tiny-models/make-tiny-model.js';
import { api, makeSandbox, serveProcess, txt2img, type Sandbox } from './helpers.js';

const run = promisify(execFile);

/** A PNG chunk with its CRC; `crc` overrides it (a damaged file). */
function pngChunk(type: string, data: Buffer, crc?: number): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const tail = Buffer.alloc(4);
  tail.writeUInt32BE(crc ?? zlib.crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, tail]);
}

/** A plain PNG with a `fusegraph` iTXt chunk holding `text`, before IEND. */
async function pngWithChunk(text: string): Promise<Buffer> {
  const png = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } }).png().toBuffer();
  const itxt = pngChunk('iTXt', Buffer.concat([Buffer.from('fusegraph\0\0\0\0\0', 'latin1'), Buffer.from(text, 'utf8')]));
  return Buffer.concat([png.subarray(0, png.length - 12), itxt, png.subarray(png.length - 12)]);
}

const DEPTH = 100_000;
const deep = (inner = ''): string => `${'['.repeat(DEPTH)}${inner}${']'.repeat(DEPTH)}`;

interface Issue { node: string; field: string; message: string }

/**
 * No single request or model folder can freeze the server (issue 27). The server is a process of its own, so that a
 * request that would hang it (as a 1e9 num_train_timesteps did) fails this test instead of hanging the test runner.
 * Nothing is timed: each hostile request must be refused naming its limit, and the server must answer a plain request
 * sent alongside it.
 */
describe('hostile requests and model folders are refused naming the limit (issue 27)', { skip: process.platform !== 'linux' && 'serves as a process' }, () => {
  let sandbox: Sandbox;
  let server: Awaited<ReturnType<typeof serveProcess>>;
  const badFolders: Record<string, { file: string; edit: Record<string, unknown>; key: RegExp }> = {
    'timesteps-1e9': { file: 'scheduler/scheduler_config.json', edit: { num_train_timesteps: 1e9 }, key: /num_train_timesteps must be an integer from 1 to 10000, got 1000000000/ },
    'beta-end-5': { file: 'scheduler/scheduler_config.json', edit: { beta_end: 5 }, key: /beta_end must be a number in \(0, 1\), got 5/ },
    'betas-reversed': { file: 'scheduler/scheduler_config.json', edit: { beta_start: 0.02, beta_end: 0.001 }, key: /beta_start must be less than beta_end/ },
    'unet-64-levels': { file: 'unet/config.json', edit: { block_out_channels: Array.from({ length: 64 }, () => 32) }, key: /block_out_channels must be a list of 1 to 8 channel counts/ },
  };
  before(async () => {
    sandbox = await makeSandbox();
    for (const [name, { file, edit }] of Object.entries(badFolders)) {
      const dir = path.join(sandbox.modelsRoot, name);
      await writeTinyModel(dir, { tokenizerDir: TOKENIZER_FIXTURE });
      const json = JSON.parse(await readFile(path.join(dir, file), 'utf8').catch(() => '{}')) as Record<string, unknown>;
      await writeFile(path.join(dir, file), JSON.stringify({ ...json, ...edit }));
    }
    server = await serveProcess(sandbox);
  });
  after(async () => {
    server?.child.kill('SIGKILL');
    await server?.exited;
    await sandbox?.remove();
  });

  /** A plain request that must be answered while a hostile one is in flight. */
  const health = async (): Promise<number> => (await fetch(`${server.url}/api/queue`, { signal: AbortSignal.timeout(60_000) })).status;

  for (const [name, { file, key }] of Object.entries(badFolders)) {
    it(`a run naming ${name} is refused before it is queued, naming the file and the key`, async () => {
      const [post, queue] = await Promise.all([
        fetch(`${server.url}/api/runs`, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ graph: txt2img({ model: name }) }), signal: AbortSignal.timeout(60_000),
        }),
        health(),
      ]);
      assert.equal(queue, 200);
      const body = (await post.json()) as { error: string; issues: Issue[] };
      assert.equal(post.status, 400, JSON.stringify(body));
      const issue = body.issues.find((i) => i.node === 'model');
      assert.ok(issue, JSON.stringify(body.issues));
      assert.equal(issue.field, 'params.path');
      assert.match(issue.message, new RegExp(`${name}/${file}: `));
      assert.match(issue.message, key);
      assert.ok(!issue.message.includes(sandbox.root), `no absolute path: ${issue.message}`);
    });
  }

  it('GET /api/models names each broken folder, with paths relative to the models root', async () => {
    const { body } = await api<{ models: { path: string; error?: string }[] }>(server.url, '/api/models');
    for (const [name, { file, key }] of Object.entries(badFolders)) {
      const m = body.models.find((x) => x.path === name);
      assert.ok(m?.error, `${name} listed with its error: ${JSON.stringify(m)}`);
      assert.ok(m.error.startsWith(`${name}/${file}: `), m.error);
      assert.match(m.error, key);
      assert.ok(!m.error.includes(sandbox.root), m.error);
    }
  });

  it('a deeply nested JSON body is refused with 400 naming the depth limit', async () => {
    const [post, queue] = await Promise.all([
      api<{ error: string; message: string }>(server.url, '/api/runs', { raw: `{"graph":${deep()}}`, headers: { 'content-type': 'application/json' } }),
      health(),
    ]);
    assert.equal(queue, 200);
    assert.equal(post.status, 400, JSON.stringify(post.body));
    assert.equal(post.body.error, 'json_too_deep');
    assert.match(post.body.message, /request body nests arrays and objects deeper than the limit of 64 levels/);
  });

  it('a PNG whose fusegraph chunk is deeply nested is refused naming the depth limit', async () => {
    const png = await pngWithChunk(deep());
    const [post, queue] = await Promise.all([
      api<{ error: string; message: string }>(server.url, '/api/graph-from-png', { raw: png, headers: { 'content-type': 'image/png' } }),
      health(),
    ]);
    assert.equal(queue, 200);
    assert.equal(post.status, 400, JSON.stringify(post.body));
    assert.equal(post.body.error, 'json_too_deep');
    assert.match(post.body.message, /"fusegraph" chunk nests arrays and objects deeper than the limit of 64 levels/);
  });

  it('a PNG chunk with a wrong CRC is refused naming the chunk', async () => {
    const good = await encodePngWithMetadata(new Uint8Array(4 * 4 * 3), 4, 4, { graph: txt2img({ prompt: 'a red circle' }) });
    const ok = await api(server.url, '/api/graph-from-png', { raw: good, headers: { 'content-type': 'image/png' } });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    // One letter of the prompt changed after the file was written: still a valid graph, but not the bytes the CRC covers.
    const at = good.indexOf('a red circle');
    const damaged = Buffer.from(good);
    damaged[at + 2] = 'b'.charCodeAt(0);
    const res = await api<{ error: string; message: string }>(server.url, '/api/graph-from-png', { raw: damaged, headers: { 'content-type': 'image/png' } });
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.equal(res.body.error, 'bad_png');
    assert.match(res.body.message, /the PNG is damaged: its iTXt chunk at byte \d+ has CRC 0x[0-9a-f]{8}, but its bytes give 0x[0-9a-f]{8}/);
  });

  it('a deeply nested WebSocket frame is answered with an error naming the depth limit, and the socket stays usable', async () => {
    const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/ws`);
    const frames: { type: string; message?: string }[] = [];
    const waiters: (() => void)[] = [];
    ws.on('message', (d) => {
      frames.push(JSON.parse(String(d)) as { type: string; message?: string });
      waiters.splice(0).forEach((w) => w());
    });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const until = (pred: () => boolean): Promise<void> => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no such frame; got ${JSON.stringify(frames).slice(0, 300)}`)), 60_000);
      const check = (): void => {
        if (pred()) {
          clearTimeout(timer);
          resolve();
        } else waiters.push(check);
      };
      check();
    });
    ws.send(`{"type":"subscribe","runs":${deep('"x"')}}`);
    ws.send('{"type":"ping"}');
    await until(() => frames.some((f) => f.type === 'pong'));
    const error = frames.find((f) => f.type === 'error');
    assert.match(error?.message ?? '', /the frame nests arrays and objects deeper than the limit of 64 levels/);
    ws.close();
  });

  const cli = async (args: string[]): Promise<{ code: number; stderr: string }> => {
    try {
      const { stderr } = await run(process.execPath, [path.join(REPO_ROOT, 'bin', 'fusegraph.js'), ...args], { cwd: sandbox.root, timeout: 120_000 });
      return { code: 0, stderr };
    } catch (err) {
      return err as { code: number; stderr: string };
    }
  };

  it('fusegraph run refuses a deeply nested graph file and a PNG with a wrong CRC, naming the limit', async () => {
    const file = path.join(sandbox.root, 'deep.json');
    await writeFile(file, deep());
    const deepRun = await cli(['run', file, '--models', sandbox.modelsRoot, '--out', sandbox.outputRoot]);
    assert.notEqual(deepRun.code, 0);
    assert.match(deepRun.stderr, /deep\.json: the graph file nests arrays and objects deeper than the limit of 64 levels/);

    const good = await encodePngWithMetadata(new Uint8Array(4 * 4 * 3), 4, 4, { graph: txt2img() });
    good[good.indexOf('a red circle') + 2] = 'b'.charCodeAt(0);
    const png = path.join(sandbox.root, 'damaged.png');
    await writeFile(png, good);
    const pngRun = await cli(['run', png, '--models', sandbox.modelsRoot, '--out', sandbox.outputRoot]);
    assert.notEqual(pngRun.code, 0);
    assert.match(pngRun.stderr, /damaged\.png: the PNG is damaged: its iTXt chunk at byte \d+ has CRC/);
  });
});
