/**
 * The checkpoint build cache (server/sd/checkpoint-cache.ts) on real builds of the tiny VAE files: one build per key
 * however many ask at once, leftovers of a crashed build removed, least recently used builds evicted past the byte
 * bound, never one a loaded model uses.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CheckpointCache, type BuildRequest } from '../../server/sd/checkpoint-cache.js';
import { REPO_ROOT } from '../helpers/graphs.js';

const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'checkpoints');
const vae = (file: string): BuildRequest => ({ kind: 'vae', file: path.join(FIXTURES, file), ema: false, vaeFile: null, precision: 'float32' });

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-cache-'));
});
after(() => rm(dir, { recursive: true, force: true }));

test('concurrent requests for one build share it; a later request reuses it; abandoned temporary folders go', async () => {
  const logs: string[] = [];
  const cache = new CheckpointCache({ dir: path.join(dir, 'shared'), maxBytes: 2 ** 40, log: (m) => logs.push(m) });
  const key = await cache.keyOf(vae('tiny-vae.safetensors'));
  // What a process killed mid-build leaves: a temporary folder whose owner is gone (pid 2^22 + 1 is above pid_max).
  const abandoned = path.join(cache.dir, `.building-${key}-4194305-deadbeef`);
  await mkdir(abandoned, { recursive: true });
  const [a, b] = await Promise.all([cache.ensure(vae('tiny-vae.safetensors')), cache.ensure(vae('tiny-vae.safetensors'))]);
  assert.equal(a, b);
  assert.equal(logs.filter((l) => l.startsWith('built')).length, 1);
  assert.equal(await cache.ensure(vae('tiny-vae.safetensors')), a);
  assert.equal(logs.filter((l) => l.startsWith('built')).length, 1, 'the second request is served from the cache');
  assert.deepEqual((await readdir(cache.dir)).filter((n) => n.startsWith('.building-')), []);
  assert.equal(await cache.isBuilt(vae('tiny-vae.safetensors')), true);
});

test('past the byte bound the least recently used build goes, never one a loaded model holds', async () => {
  const logs: string[] = [];
  const cache = new CheckpointCache({ dir: path.join(dir, 'bounded'), maxBytes: 1, log: (m) => logs.push(m) });
  const first = await cache.ensure(vae('tiny-vae.safetensors'));
  const second = await cache.ensure(vae('tiny-sd1.ckpt'));
  let keys = (await cache.list()).map((e) => e.dir);
  assert.deepEqual(keys, [second], 'the older build was evicted');
  const release = cache.pin(second);
  const third = await cache.ensure(vae('tiny-vae.safetensors'));
  assert.equal(third, first);
  keys = (await cache.list()).map((e) => e.dir).sort();
  assert.deepEqual(keys, [first, second].sort(), 'the pinned build stays, over the bound');
  release();
  assert.equal(await cache.clear(), 2);
  assert.deepEqual(await cache.list(), []);
  assert.ok(logs.some((l) => /removed the least recently used build/.test(l)));
});
