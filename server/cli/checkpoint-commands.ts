import { existsSync } from 'node:fs';
import path from 'node:path';
import { formatInspectReport } from '../checkpoint/inspect-report.js';
import { CheckpointCache, DEFAULT_CHECKPOINT_CACHE_BYTES, checkpointCacheDir } from '../sd/checkpoint-cache.js';
import { describeCheckpointFile, writeCheckpointFolder } from '../sd/checkpoint-folder.js';
import type { ParsedArgs } from './args.js';
import { checkFlags, flag, numberFlag } from './args.js';
import { formatBytes } from '../engine/format-bytes.js';

export const CHECKPOINT_USAGE: Record<string, string> = {
  inspect: `  inspect FILE                 what a checkpoint is: family, key layout, EMA, dtypes, tensors, size, prediction
      guess and the keys FuseGraph does not understand (.safetensors, .ckpt, .pt, .pth)
`,
  convert: `  convert FILE --out DIR [--ema] [--vae FILE] [--precision float32|float16] [--prediction epsilon|v_prediction]
      write a standard diffusers/optimum ONNX folder from a checkpoint (what LoadModel builds and caches itself)
`,
  cache: `  cache ls|clear [--data DIR]    list or remove the ONNX builds of checkpoints cached in --data (default .fusegraph)
`,
};

/** Boolean switches of these commands (parseArgs needs them to know a flag takes no value). */
export const CHECKPOINT_SWITCHES = ['ema'] as const;

type Io = { out: NodeJS.WriteStream; err: NodeJS.WriteStream };

export async function cmdInspect(args: ParsedArgs, io: Io): Promise<number> {
  checkFlags(args, []);
  const file = args.positionals[1];
  if (!file) throw new Error('missing FILE argument');
  io.out.write(`${formatInspectReport(await describeCheckpointFile(path.resolve(file)))}\n`);
  return 0;
}

export async function cmdConvert(args: ParsedArgs, io: Io): Promise<number> {
  checkFlags(args, ['out', 'ema', 'vae', 'precision', 'prediction']);
  const file = args.positionals[1];
  if (!file) throw new Error('missing FILE argument');
  const out = flag(args, 'out');
  if (!out) throw new Error('convert needs --out DIR');
  if (existsSync(out)) throw new Error(`--out ${out} exists already: convert writes a new folder`);
  const precision = flag(args, 'precision') ?? 'float32';
  if (precision !== 'float32' && precision !== 'float16') throw new Error(`--precision must be float32 or float16, got "${precision}"`);
  const prediction = flag(args, 'prediction');
  if (prediction !== undefined && prediction !== 'epsilon' && prediction !== 'v_prediction') {
    throw new Error(`--prediction must be epsilon or v_prediction, got "${prediction}"`);
  }
  const vae = flag(args, 'vae');
  const started = Date.now();
  const bar = buildBar(io);
  const manifest = await writeCheckpointFolder(path.resolve(file), path.resolve(out), {
    ema: flag(args, 'ema') === 'true',
    vaeFile: vae ? path.resolve(vae) : null,
    precision,
    ...(prediction ? { prediction } : {}),
    onProgress: bar,
  });
  bar.end();
  io.out.write(`wrote ${out} (${manifest.family}, ${manifest.prediction}, ${precision}) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return 0;
}

export async function cmdCache(args: ParsedArgs, io: Io): Promise<number> {
  checkFlags(args, ['data', 'max-checkpoint-cache']);
  const sub = args.positionals[1];
  const cache = new CheckpointCache({
    dir: checkpointCacheDir(path.resolve(flag(args, 'data') ?? '.fusegraph')),
    maxBytes: numberFlag(args, 'max-checkpoint-cache') ?? DEFAULT_CHECKPOINT_CACHE_BYTES,
  });
  if (sub === 'ls') {
    const entries = await cache.list();
    if (!entries.length) io.out.write(`no checkpoint builds in ${cache.dir}\n`);
    for (const e of entries) {
      const m = e.manifest;
      const what = m ? `${m.source} (${m.family ?? 'vae'}${m.ema ? ', ema' : ''}${m.vae ? `, vae ${m.vae}` : ''}${m.precision ? `, ${m.precision}` : ''})` : '(unreadable manifest)';
      io.out.write(`${e.key}  ${formatBytes(e.bytes).padStart(9)}  last used ${e.lastUsed.toISOString()}  ${what}\n`);
    }
    const total = entries.reduce((s, e) => s + e.bytes, 0);
    if (entries.length) io.out.write(`${entries.length} build(s), ${formatBytes(total)} in ${cache.dir}\n`);
    return 0;
  }
  if (sub === 'clear') {
    io.out.write(`removed ${await cache.clear()} build(s) from ${cache.dir}\n`);
    return 0;
  }
  throw new Error(`cache needs ls or clear, got ${sub === undefined ? 'nothing' : `"${sub}"`}`);
}

/** A one-line bar per part on a terminal, plain lines otherwise (as `run` draws sampling progress). */
function buildBar(io: Io): ((part: string, done: number, total: number) => void) & { end(): void } {
  const tty = io.err.isTTY === true;
  let last = '';
  const update = (part: string, done: number, total: number): void => {
    const pct = total > 0 ? Math.round((100 * done) / total) : 100;
    if (tty) {
      const width = 30;
      const filled = Math.round((width * pct) / 100);
      io.err.write(`\r${part.padEnd(12)} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(pct).padStart(3)}%`);
    } else if (part !== last || done === total) {
      if (part !== last || done === total) io.err.write(`${part}: ${done}/${total}\n`);
    }
    last = part;
  };
  return Object.assign(update, { end: () => (tty && last ? io.err.write('\n') : undefined) });
}
