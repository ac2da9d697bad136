// Usage: node --import tsx tools/tiny-models/cli.ts OUT_DIR [options]
// Writes one tiny SD-style ONNX folder (see make-tiny-model.ts).

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import {
  TINY_VARIANTS,
  resolveTinyModelOptions,
  writeTinyModel,
  type TinyExternalData,
  type TinyModelOptions,
  type TinyTimestepType,
} from './make-tiny-model.js';

const USAGE = `Usage: node --import tsx tools/tiny-models/cli.ts OUT_DIR [options]

  --variant NAME          start from a preset: ${TINY_VARIANTS.map((v) => v.name).join(', ')}
  --seed N                weight seed (default 0)
  --dtype float32|float16
  --hidden N              text hidden size (default 32)
  --latent-channels N     (default 4)
  --vae-factor 2|4|8      (default 8)
  --input-ids int32|int64
  --timestep-type float32|float16|int64
  --timestep-rank 0|1
  --timestep-dim NAME     symbolic dim of a rank-1 timestep
  --external-data none|weights.pb|model.onnx_data|model.onnx.data
  --layout diffusers|optimum
  --unet-width N          UNet feature width (default 16)
  --unet-depth N          extra residual conv blocks
  --scaling-factor X      VAE scaling_factor (default 0.18215)
  --scheduler-config JSON merged over the SD1 PNDM scheduler config
  --tokenizer DIR         CLIP tokenizer folder, or byte-level (default server/sd/clip-tokenizer)
  -h, --help`;

function int(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`--${name} expects an integer, got ${v}`);
  return n;
}

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${name} expects a number, got ${v}`);
  return n;
}

function oneOf<T extends string>(name: string, v: string | undefined, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(v)) throw new Error(`--${name} must be one of ${allowed.join(', ')}, got ${v}`);
  return v as T;
}

export function parseCliArgs(argv: readonly string[]): { outDir: string; options: TinyModelOptions } | null {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      variant: { type: 'string' },
      seed: { type: 'string' },
      dtype: { type: 'string' },
      hidden: { type: 'string' },
      'latent-channels': { type: 'string' },
      'vae-factor': { type: 'string' },
      'input-ids': { type: 'string' },
      'timestep-type': { type: 'string' },
      'timestep-rank': { type: 'string' },
      'timestep-dim': { type: 'string' },
      'external-data': { type: 'string' },
      layout: { type: 'string' },
      'unet-width': { type: 'string' },
      'unet-depth': { type: 'string' },
      'scaling-factor': { type: 'string' },
      'scheduler-config': { type: 'string' },
      tokenizer: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return null;
  if (positionals.length !== 1) throw new Error('expected exactly one OUT_DIR');

  let options: TinyModelOptions = {};
  if (values.variant !== undefined) {
    const preset = TINY_VARIANTS.find((v) => v.name === values.variant);
    if (!preset) throw new Error(`unknown --variant ${values.variant}`);
    options = { ...preset.options };
  }

  const set = <K extends keyof TinyModelOptions>(key: K, v: TinyModelOptions[K] | undefined): void => {
    if (v !== undefined) options[key] = v;
  };
  set('seed', int('seed', values.seed));
  set('dtype', oneOf('dtype', values.dtype, ['float32', 'float16'] as const));
  set('hidden', int('hidden', values.hidden));
  set('latentChannels', int('latent-channels', values['latent-channels']));
  set('vaeFactor', int('vae-factor', values['vae-factor']));
  set('inputIdsType', oneOf('input-ids', values['input-ids'], ['int32', 'int64'] as const));
  set('layout', oneOf('layout', values.layout, ['diffusers', 'optimum'] as const));
  set('unetWidth', int('unet-width', values['unet-width']));
  set('unetDepth', int('unet-depth', values['unet-depth']));
  set('scalingFactor', num('scaling-factor', values['scaling-factor']));
  if (values.tokenizer !== undefined) options.tokenizerDir = values.tokenizer === 'byte-level' ? 'byte-level' : path.resolve(values.tokenizer);

  const ext = oneOf('external-data', values['external-data'], ['none', 'weights.pb', 'model.onnx_data', 'model.onnx.data'] as const);
  if (ext !== undefined) options.externalData = ext === 'none' ? null : (ext satisfies TinyExternalData);

  const tsType = oneOf<TinyTimestepType>('timestep-type', values['timestep-type'], ['float32', 'float16', 'int64']);
  const tsRank = oneOf('timestep-rank', values['timestep-rank'], ['0', '1'] as const);
  const tsDim = values['timestep-dim'];
  if (tsType !== undefined || tsRank !== undefined || tsDim !== undefined) {
    // Unspecified timestep fields fall back to what the other options would give.
    const base = resolveTinyModelOptions({ ...options, tokenizerDir: options.tokenizerDir ?? '' }).timestep;
    options.timestep = {
      type: tsType ?? base.type,
      rank: tsRank === undefined ? base.rank : tsRank === '0' ? 0 : 1,
      ...(tsDim !== undefined ? { dim: tsDim } : options.timestep?.dim !== undefined ? { dim: options.timestep.dim } : {}),
    };
  }

  if (values['scheduler-config'] !== undefined) {
    const parsed: unknown = JSON.parse(values['scheduler-config']);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('--scheduler-config must be a JSON object');
    options.schedulerConfig = parsed as Record<string, unknown>;
  }

  return { outDir: path.resolve(positionals[0] as string), options };
}

async function main(): Promise<void> {
  let parsed: ReturnType<typeof parseCliArgs>;
  try {
    parsed = parseCliArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (parsed === null) {
    console.log(USAGE);
    return;
  }
  await writeTinyModel(parsed.outDir, parsed.options);
  const o = resolveTinyModelOptions(parsed.options);
  console.log(
    `wrote ${parsed.outDir} (seed ${o.seed}, ${o.layout}, ${o.dtype}, input_ids ${o.inputIdsType}, ` +
      `timestep ${o.timestep.type} rank ${o.timestep.rank}, unet F=${o.unetWidth} depth ${o.unetDepth}, ` +
      `external ${o.externalData ?? 'none'})`,
  );
}

// Only run when executed directly, so tests can import parseCliArgs.
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
