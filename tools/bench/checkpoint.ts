/**
 * `npm run bench:checkpoint`: what building an ONNX folder from a Stable Diffusion checkpoint costs, and how fast
 * the built UNet runs next to a torch-exported one of the same weights.
 *
 *   npm run bench:checkpoint -- [--small] [--size 32] [--rounds 3] [--batch 2] [--threads N]
 *                               [--precisions float32,float16] [--skip-torch] [--skip-build] [--dir /tmp/fusegraph-bench]
 *
 * --skip-build reuses the cached float32 build (a cached load, then the UNet comparison); --skip-torch stops after
 * the builds and loads.
 *
 * 1. A full-size random SD-1.5 checkpoint (real LDM key names and shapes, F16 safetensors, 2.1 GB, written tensor by
 *    tensor by tools/checkpoint-reference/make_sd15_random.py with Debian's /usr/bin/python3) is cached in --dir;
 *    --small uses the same layout with UNet model_channels 64, CLIP 4 layers, VAE ch 32.
 * 2. Build: the whole folder (text encoder, UNet, VAE decoder + encoder) at each precision, each in a child process
 *    of its own, timed per part; peak RSS is the child's VmHWM (/proc/self/status) after the build, next to the
 *    VmHWM of a child that only started (the Node + tsx baseline). float32 is built as FuseGraph's CPU path builds it
 *    (ModelManager → CheckpointCache → writeCheckpointFolder), which is also the "first load".
 * 3. Load: first load = content hash + build + session creation (a fresh cache); cached load = a new process
 *    loading the same model again (hash looked up, build reused, sessions created). Sessions are ModelManager's
 *    (SdModel, CPU provider, sessions in their worker process).
 * 4. UNet: the built float32 unet/model.onnx vs tools/checkpoint-reference/export_unet_onnx.py's torch.onnx.export
 *    (opset 17, dynamic axes, external data) of the same weights, both on onnxruntime-node's CPU provider with
 *    FuseGraph's session options, batch --batch at a --size² latent, a warm-up call each, then --rounds interleaved
 *    rounds (order alternating); medians and their ratio. The outputs of the two are compared as a sanity figure.
 *
 * Prints a table; asserts nothing. Heavy: run under `nice` on a shared machine.
 */

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import ort from 'onnxruntime-node';

import type { GraphPrecision } from '../../server/checkpoint/weights.js';
import { median } from '../stats.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const REF = path.join(ROOT, 'tools', 'checkpoint-reference');
const TORCH_PYTHON = '/usr/bin/python3';
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------------
// measurements made in child processes (one fresh process per measurement, so each peak RSS is its own)

interface ChildResult {
  readonly [k: string]: unknown;
}

async function procStatus(field: 'VmHWM' | 'VmRSS'): Promise<number> {
  const m = new RegExp(`${field}:\\s+(\\d+)`).exec(await readFile('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? await dirBytes(p) : (await stat(p)).size;
  }
  return total;
}

/** Times each part from writeCheckpointFolder's progress calls (text_encoder, unet …, vae_decoder when done). */
function partTimer(): { onProgress: (part: string, done: number, total: number) => void; parts: () => Record<string, number> } {
  const t0 = performance.now();
  const ends = new Map<string, number>();
  return {
    onProgress: (part, done, total) => {
      if (done === total) ends.set(part, performance.now());
    },
    parts: () => {
      const out: Record<string, number> = {};
      let last = t0;
      for (const [part, end] of ends) {
        out[part === 'vae_decoder' ? 'vae' : part] = (end - last) / 1000;
        last = end;
      }
      return out;
    },
  };
}

async function childMain(mode: string, arg: Record<string, string>): Promise<ChildResult> {
  const startHwm = await procStatus('VmHWM');
  if (mode === 'baseline') {
    // What a build child holds before building: Node, tsx and the modules a build imports.
    await import('../../server/sd/checkpoint-folder.js');
    await import('../../server/sd/model-manager.js');
    return { hwmMiB: await procStatus('VmHWM') };
  }
  if (mode === 'build') {
    const { writeCheckpointFolder } = await import('../../server/sd/checkpoint-folder.js');
    await rm(arg.out!, { recursive: true, force: true });
    const timer = partTimer();
    const t0 = performance.now();
    await writeCheckpointFolder(arg.file!, arg.out!, { ema: false, vaeFile: null, precision: arg.precision as GraphPrecision, onProgress: timer.onProgress });
    const seconds = (performance.now() - t0) / 1000;
    return { seconds, parts: timer.parts(), hwmMiB: await procStatus('VmHWM'), maxRssMiB: process.resourceUsage().maxRSS / 1024, startHwm, bytes: await dirBytes(arg.out!) };
  }
  if (mode === 'load') {
    // FuseGraph's path for a LoadModel naming a checkpoint file on the CPU provider.
    const { CheckpointCache } = await import('../../server/sd/checkpoint-cache.js');
    const { ModelManager } = await import('../../server/sd/model-manager.js');
    if (arg.fresh === '1') await rm(arg.cache!, { recursive: true, force: true });
    const cache = new CheckpointCache({ dir: arg.cache!, maxBytes: 64 * 1024 * MiB });
    const manager = new ModelManager({ checkpoints: cache, threads: Number(arg.threads) });
    const t0 = performance.now();
    const hashStarted = performance.now();
    await cache.contentHash(arg.file!);
    const hash = (performance.now() - hashStarted) / 1000;
    const timer = partTimer();
    const buildStarted = performance.now();
    const dir = await cache.ensure({ kind: 'model', file: arg.file!, ema: false, vaeFile: null, precision: 'float32' }, timer.onProgress);
    const build = (performance.now() - buildStarted) / 1000;
    const buildHwm = await procStatus('VmHWM');
    const loadStarted = performance.now();
    const model = await manager.acquire({ path: arg.file!, kind: 'checkpoint', ema: false, vae: null, prediction: 'auto', loras: [] }, 'cpu');
    const load = (performance.now() - loadStarted) / 1000;
    const total = (performance.now() - t0) / 1000;
    const folder = model.folder.dir;
    manager.release(model);
    await manager.releaseIdle();
    return { dir, folder, hash, build, parts: timer.parts(), load, total, buildHwmMiB: buildHwm, hwmMiB: await procStatus('VmHWM'), bytes: await dirBytes(dir) };
  }
  if (mode === 'lora') return loraStrengthChange(arg);
  if (mode === 'unet') return unetCompare(arg);
  throw new Error(`unknown child mode ${mode}`);
}

/**
 * A LoRA on the cached float32 build: a random kohya LoRA (rank 32) on every UNet attention projection and every CLIP
 * self-attention projection, built once at strength 0.8 and then changed to 0.5: what a user tuning a LoRA waits.
 */
async function loraStrengthChange(arg: Record<string, string>): Promise<ChildResult> {
  const { CheckpointCache } = await import('../../server/sd/checkpoint-cache.js');
  const { openTensorFile } = await import('../../server/checkpoint/formats/open-tensor-file.js');
  const { describeCheckpoint, componentWeights } = await import('../../server/checkpoint/describe.js');
  const { writeSafetensors } = await import('../../server/checkpoint/formats/safetensors-writer.js');
  const loraFile = arg.lora!;
  if (!existsSync(loraFile)) {
    const ckpt = await openTensorFile(arg.file!);
    const desc = await describeCheckpoint(ckpt);
    const targets: { key: string; shape: readonly number[] }[] = [];
    const unet = componentWeights(ckpt, desc, 'unet', { ema: false });
    for (const n of unet.names()) if (/\.attn[12]\.to_(q|k|v|out\.0)\.weight$/.test(n)) targets.push({ key: `lora_unet_${n.replace(/\.weight$/, '').split('.').join('_')}`, shape: unet.shape(n) });
    const te = componentWeights(ckpt, desc, 'textEncoder', { ema: false });
    for (const n of te.names()) if (/self_attn\.(q|k|v|out)_proj\.weight$/.test(n)) targets.push({ key: `lora_te_${n.replace(/\.weight$/, '').split('.').join('_')}`, shape: te.shape(n) });
    await ckpt.close();
    const rank = 32;
    const rnd = (n: number, scale: number, seed: number): Float32Array => Float32Array.from({ length: n }, (_, i) => scale * Math.sin((i + 1) * 12.9898 + seed * 78.233));
    const entries = targets.flatMap((t, i) => [
      { name: `${t.key}.lora_down.weight`, dtype: 'F32' as const, shape: [rank, t.shape[1]!], data: () => rnd(rank * t.shape[1]!, 0.02, 2 * i) },
      { name: `${t.key}.lora_up.weight`, dtype: 'F32' as const, shape: [t.shape[0]!, rank], data: () => rnd(t.shape[0]! * rank, 0.02, 2 * i + 1) },
      { name: `${t.key}.alpha`, dtype: 'F32' as const, shape: [], data: Float32Array.of(16) },
    ]);
    await writeSafetensors(loraFile, entries);
  }
  const cache = new CheckpointCache({ dir: arg.cache!, maxBytes: 64 * 1024 * MiB });
  const req = (strength: number) => ({
    kind: 'model' as const, file: arg.file!, ema: false, vaeFile: null, precision: 'float32' as const,
    loras: [{ file: loraFile, strengthModel: strength, strengthClip: strength }],
  });
  const baseStarted = performance.now();
  await cache.ensure({ ...req(0), loras: [] });
  const base = (performance.now() - baseStarted) / 1000;
  const times: number[] = [];
  let dir = '';
  for (const strength of [0.8, 0.5]) {
    const t0 = performance.now();
    dir = await cache.ensure(req(strength));
    times.push((performance.now() - t0) / 1000);
  }
  const written = (await stat(path.join(dir, 'unet', 'weights.pb'))).size + (await stat(path.join(dir, 'text_encoder', 'weights.pb'))).size;
  return { base, first: times[0]!, change: times[1]!, written, loraBytes: (await stat(loraFile)).size, hwmMiB: await procStatus('VmHWM') };
}

/** Per-call time of the built UNet vs the torch export, interleaved, in this process. */
async function unetCompare(arg: Record<string, string>): Promise<ChildResult> {
  const { sessionOptions } = await import('../../server/runtime/session-options.js');
  const batch = Number(arg.batch);
  const size = Number(arg.size);
  const rounds = Number(arg.rounds);
  const threads = Number(arg.threads);
  const ctx = Number(arg.context);
  const rand = (n: number, scale = 1): Float32Array => Float32Array.from({ length: n }, (_, i) => scale * Math.sin(i * 12.9898 + 78.233 + ((i * i) % 7)));
  const feeds = {
    sample: new ort.Tensor('float32', rand(batch * 4 * size * size), [batch, 4, size, size]),
    timestep: new ort.Tensor('float32', Float32Array.from({ length: batch }, () => 500), [batch]),
    encoder_hidden_states: new ort.Tensor('float32', rand(batch * 77 * ctx), [batch, 77, ctx]),
  };
  const opts = sessionOptions('cpu', threads);
  const sessions: { name: string; file: string; session?: ort.InferenceSession; createS?: number; warmS?: number; ms: number[]; out?: Float32Array }[] = [
    { name: 'built', file: arg.built!, ms: [] },
    { name: 'torch', file: arg.torch!, ms: [] },
  ];
  for (const s of sessions) {
    const t0 = performance.now();
    s.session = await ort.InferenceSession.create(s.file, opts);
    s.createS = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    const out = await s.session.run(feeds);
    s.warmS = (performance.now() - t1) / 1000;
    s.out = (out[s.session.outputNames[0]!]!.data as Float32Array).slice();
  }
  for (let r = 0; r < rounds; r++) {
    for (const s of r % 2 === 0 ? sessions : [...sessions].reverse()) {
      const t0 = performance.now();
      await s.session!.run(feeds);
      s.ms.push(performance.now() - t0);
    }
  }
  const [a, b] = [sessions[0]!.out!, sessions[1]!.out!];
  let maxDiff = 0;
  let maxRef = 0;
  let finite = true;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]!) || !Number.isFinite(b[i]!)) finite = false;
    maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    maxRef = Math.max(maxRef, Math.abs(b[i]!));
  }
  for (const s of sessions) await s.session!.release();
  return {
    built: { createS: sessions[0]!.createS, warmS: sessions[0]!.warmS, ms: sessions[0]!.ms, median: median(sessions[0]!.ms) },
    torch: { createS: sessions[1]!.createS, warmS: sessions[1]!.warmS, ms: sessions[1]!.ms, median: median(sessions[1]!.ms) },
    maxDiff,
    maxRef,
    finite,
    hwmMiB: await procStatus('VmHWM'),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// the parent: prepares the files, runs the children, prints the table

function run(cmd: string, args: readonly string[], label: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.length > 20000) err = err.slice(-10000);
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${label} exited with ${code}:\n${err.slice(-4000)}`))));
  });
}

/** The last line of a child's stdout that is JSON (children may log before it). */
function lastJson(out: string): ChildResult {
  const line = out.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  if (!line) throw new Error(`no JSON result in:\n${out.slice(-2000)}`);
  return JSON.parse(line) as ChildResult;
}

async function child(mode: string, arg: Record<string, string>): Promise<ChildResult> {
  const out = await run(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', mode, '--arg', JSON.stringify(arg)], `${mode} child`);
  return lastJson(out);
}

const fmtS = (s: unknown): string => (typeof s === 'number' ? `${s.toFixed(1)} s` : '–');
const fmtMiB = (m: unknown): string => (typeof m === 'number' ? `${m.toFixed(0)} MiB` : '–');
const fmtGB = (b: unknown): string => (typeof b === 'number' ? `${(b / 1e9).toFixed(2)} GB` : '–');
const fmtParts = (p: unknown): string =>
  p && typeof p === 'object' ? Object.entries(p as Record<string, number>).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ') + ' s' : '';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      child: { type: 'string' },
      arg: { type: 'string' },
      small: { type: 'boolean', default: false },
      size: { type: 'string', default: '32' },
      rounds: { type: 'string', default: '3' },
      batch: { type: 'string', default: '2' },
      threads: { type: 'string', default: String(os.availableParallelism()) },
      precisions: { type: 'string', default: 'float32,float16' },
      'skip-torch': { type: 'boolean', default: false },
      'skip-build': { type: 'boolean', default: false },
      dir: { type: 'string', default: '/tmp/fusegraph-bench' },
    },
  });
  if (values.child !== undefined) {
    const result = await childMain(values.child, JSON.parse(values.arg ?? '{}') as Record<string, string>);
    process.stdout.write(JSON.stringify(result) + '\n');
    return;
  }

  const dir = path.resolve(values.dir);
  await mkdir(dir, { recursive: true });
  const small = values.small;
  const tag = small ? 'sd15-small-random-fp16' : 'sd15-random-fp16';
  const file = path.join(dir, `${tag}.safetensors`);
  const precisions = values.precisions.split(',').map((p) => p.trim()) as GraphPrecision[];
  const threads = values.threads;
  const rows: [string, string][] = [];
  const row = (k: string, v: string): void => {
    rows.push([k, v]);
    console.log(`  ${k}: ${v}`);
  };

  console.log(`checkpoint bench: ${small ? 'small (UNet model_channels 64, CLIP 4 layers, VAE ch 32)' : 'full-size SD-1.5'}, ${os.cpus().length} CPUs, threads ${threads}, node ${process.version}`);
  if (!existsSync(file)) {
    console.log(`writing ${file} (make_sd15_random.py)…`);
    const gen = lastJson(await run(TORCH_PYTHON, [path.join(REF, 'make_sd15_random.py'), file, ...(small ? ['--small'] : [])], 'make_sd15_random.py'));
    row('checkpoint written', `${fmtS(gen.seconds)} (${String(gen.tensors)} tensors, ${(Number(gen.params) / 1e6).toFixed(0)} M params)`);
  }
  const ckptBytes = (await stat(file)).size;
  row('checkpoint', `${file} (${fmtGB(ckptBytes)}, F16)`);

  const base = await child('baseline', {});
  row('child baseline peak RSS', fmtMiB(base.hwmMiB));

  // float32 (the CPU path) through ModelManager + CheckpointCache: first load = hash + build + load.
  const cacheDir = path.join(dir, `cache-${tag}`);
  let builtDir: string | null = null;
  if (values['skip-build']) {
    // Reuses (or makes) the cached float32 folder: only the cached load and the UNet comparison are measured.
    console.log('float32: cached load (new process; builds first if the cache is empty)…');
    const cached = await child('load', { file, cache: cacheDir, fresh: '0', threads });
    builtDir = String(cached.dir);
    row('cached load (new process)', `${fmtS(cached.total)} (hash lookup ${fmtS(cached.hash)}, cache hit ${fmtS(cached.build)}, load ${fmtS(cached.load)})`);
  } else if (precisions.includes('float32')) {
    console.log('float32: first load (fresh cache: hash, build, sessions)…');
    const first = await child('load', { file, cache: cacheDir, fresh: '1', threads });
    builtDir = String(first.dir);
    row('build float32 (whole folder)', `${fmtS(first.build)} [${fmtParts(first.parts)}] → ${fmtGB(first.bytes)}`);
    row('build float32 peak RSS', `${fmtMiB(first.buildHwmMiB)} (VmHWM of the building process, incl. hashing)`);
    row('first load (hash + build + load)', `${fmtS(first.total)} (hash ${fmtS(first.hash)}, build ${fmtS(first.build)}, load ${fmtS(first.load)})`);
    console.log('float32: cached load (new process)…');
    const cached = await child('load', { file, cache: cacheDir, fresh: '0', threads });
    row('cached load (new process)', `${fmtS(cached.total)} (hash lookup ${fmtS(cached.hash)}, cache hit ${fmtS(cached.build)}, load ${fmtS(cached.load)})`);
  }
  if (builtDir !== null) {
    console.log('LoRA: a rank-32 kohya LoRA on every attention projection, built at strength 0.8, then changed to 0.5…');
    const l = await child('lora', { file, cache: cacheDir, lora: path.join(dir, `lora-${tag}.safetensors`) });
    row('LoRA build at 0.8 (on the cached build)', `${fmtS(l.first)} (${fmtGB(Number(l.loraBytes))} LoRA; base build cached: ${fmtS(l.base)})`);
    row('LoRA strength change 0.8 → 0.5', `${fmtS(l.change)}; ${fmtGB(Number(l.written))} of UNet + text-encoder weights rewritten, the rest linked`);
  }
  for (const precision of values['skip-build'] ? [] : precisions.filter((p) => p !== 'float32')) {
    console.log(`${precision}: build (writeCheckpointFolder)…`);
    const out = path.join(dir, `build-${tag}-${precision}`);
    const b = await child('build', { file, out, precision });
    row(`build ${precision} (whole folder)`, `${fmtS(b.seconds)} [${fmtParts(b.parts)}] → ${fmtGB(b.bytes)} (VAE stays float32)`);
    row(`build ${precision} peak RSS`, `${fmtMiB(b.hwmMiB)} (VmHWM; maxRSS ${fmtMiB(b.maxRssMiB)})`);
    await rm(out, { recursive: true, force: true });
  }

  if (!values['skip-torch'] && builtDir !== null) {
    const torchDir = path.join(dir, `torch-unet-${tag}`);
    const torchModel = path.join(torchDir, 'unet.onnx');
    if (!existsSync(torchModel)) {
      console.log('torch.onnx.export of the same UNet weights (export_unet_onnx.py)…');
      const ex = lastJson(await run(TORCH_PYTHON, [path.join(REF, 'export_unet_onnx.py'), file, torchDir], 'export_unet_onnx.py'));
      row('torch export (torch 1.13, opset 17)', `${fmtS(ex.export_s)} (+ ${fmtS(ex.load_s)} loading the weights)`);
    }
    const manifest = JSON.parse(await readFile(path.join(builtDir, 'fusegraph-checkpoint.json'), 'utf8')) as { architecture: { unet: { contextDim: number } } };
    console.log(`UNet per call: batch ${values.batch}, latent ${values.size}², ${values.rounds} interleaved rounds…`);
    const u = await child('unet', {
      built: path.join(builtDir, 'unet', 'model.onnx'),
      torch: torchModel,
      batch: values.batch,
      size: values.size,
      rounds: values.rounds,
      threads,
      context: String(manifest.architecture.unet.contextDim),
    });
    const built = u.built as { createS: number; warmS: number; ms: number[]; median: number };
    const torch = u.torch as { createS: number; warmS: number; ms: number[]; median: number };
    const list = (ms: number[]): string => ms.map((m) => (m / 1000).toFixed(2)).join(' / ');
    row('UNet session create built / torch', `${fmtS(built.createS)} / ${fmtS(torch.createS)}`);
    row('UNet first call built / torch', `${fmtS(built.warmS)} / ${fmtS(torch.warmS)}`);
    row(`UNet call built (median; rounds s)`, `${(built.median / 1000).toFixed(2)} s (${list(built.ms)})`);
    row(`UNet call torch export (median; rounds s)`, `${(torch.median / 1000).toFixed(2)} s (${list(torch.ms)})`);
    row('UNet built / torch ratio', `${(built.median / torch.median).toFixed(3)}× (goal ≤ 1.0× on CPU)`);
    row('UNet outputs max |built − torch|', `${Number(u.maxDiff).toExponential(2)} (max |torch| ${Number(u.maxRef).toFixed(2)}, finite ${String(u.finite)})`);
    row('UNet bench process peak RSS', fmtMiB(u.hwmMiB));
  }

  const w = Math.max(...rows.map(([k]) => k.length));
  console.log(`\n${'figure'.padEnd(w)} | value\n${'-'.repeat(w)}-|-${'-'.repeat(40)}`);
  for (const [k, v] of rows) console.log(`${k.padEnd(w)} | ${v}`);
}

await main();
