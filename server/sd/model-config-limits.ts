/**
 * Ranges for the values of a model folder's configs (scheduler/scheduler_config.json, unet/config.json,
 * vae_decoder/config.json), checked when the folder is read and when a run naming it is admitted (issue 27): a
 * `num_train_timesteps` of 1e9 made the server build a 4 GB noise schedule on its one thread, a 63-entry
 * `block_out_channels` asked for sizes that are "a multiple of 9223372036854776000", and `beta_end: 5` ran to an
 * all-black image. Each problem names its key and what it takes; the callers name the file. Only what a value can do
 * harm through is bounded: any real export (SD 1.x/2.x, SDXL, the tiny test models) is far inside these ranges.
 */

/** A value out of range: `key` as a path into the config ("block_out_channels[3]"), `message` what it must be. */
export interface ConfigProblem {
  readonly key: string;
  readonly message: string;
}

/** The most training timesteps a scheduler may have (SD's is 1000). */
export const MAX_TRAIN_TIMESTEPS = 10_000;
/** The most resolution levels a UNet or VAE may have (SD: 4); the size factor is 2^(levels − 1). */
export const MAX_LEVELS = 8;
/** The widest channel count a config may name (block widths, cross-attention width; SDXL's largest is 2048). */
export const MAX_CHANNELS = 65_536;

type Json = Readonly<Record<string, unknown>>;

const show = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

/** The first number anywhere in `value` that is not finite (1e400 parses to Infinity), with its path. */
function nonFinite(value: unknown, key: string): ConfigProblem | null {
  // Configs nest at most a few levels; JSON_LIMITS bounded the depth before parsing.
  if (typeof value === 'number') return Number.isFinite(value) ? null : { key, message: `must be a finite number, got ${show(value)}` };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const p = nonFinite(value[i], `${key}[${i}]`);
      if (p) return p;
    }
  } else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      const p = nonFinite(v, key ? `${key}.${k}` : k);
      if (p) return p;
    }
  }
  return null;
}

/**
 * An integer in [min, max]. A value that is no number at all is left to whoever reads the key (the schedulers' schemas
 * refuse it where their class takes the key, a class that does not take it ignores it, as diffusers' from_config does).
 */
function integerIn(cfg: Json, key: string, min: number, max: number): ConfigProblem | null {
  const v = cfg[key];
  if (typeof v !== 'number') return null;
  if (!Number.isInteger(v) || v < min || v > max) {
    return { key, message: `must be an integer from ${min} to ${max}, got ${show(v)}` };
  }
  return null;
}

/** An integer, or an array of at most MAX_LEVELS integers, in [min, max] (per-level settings such as attention_head_dim). */
function integersIn(cfg: Json, key: string, min: number, max: number): ConfigProblem | null {
  const v = cfg[key];
  if (!Array.isArray(v)) return integerIn(cfg, key, min, max);
  if (v.length > MAX_LEVELS) return { key, message: `must have at most ${MAX_LEVELS} entries, got ${v.length}` };
  for (let i = 0; i < v.length; i++) {
    const p = entryIn(v[i], `${key}[${i}]`, min, max);
    if (p) return p;
  }
  return null;
}

/** An array entry that must be an integer in [min, max]: here a non-number is wrong too (a list of widths). */
function entryIn(v: unknown, key: string, min: number, max: number): ConfigProblem | null {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) return { key, message: `must be an integer from ${min} to ${max}, got ${show(v)}` };
  return null;
}

/** A resolution ladder: 1 to MAX_LEVELS positive integer widths. */
function levels(cfg: Json, key: string): ConfigProblem | null {
  const v = cfg[key];
  if (!Array.isArray(v)) return null; // no ladder: the readers fall back to their defaults
  if (v.length < 1 || v.length > MAX_LEVELS) {
    return { key, message: `must be a list of 1 to ${MAX_LEVELS} channel counts (one per resolution level), got ${v.length} entries` };
  }
  for (let i = 0; i < v.length; i++) {
    const p = entryIn(v[i], `${key}[${i}]`, 1, MAX_CHANNELS);
    if (p) return p;
  }
  return null;
}

/** A finite number in the open interval (lo, hi); a non-number is left to the readers, as in integerIn. */
function openInterval(cfg: Json, key: string, lo: number, hi: number): ConfigProblem | null {
  const v = cfg[key];
  if (typeof v !== 'number') return null;
  if (!Number.isFinite(v) || !(v > lo && v < hi)) return { key, message: `must be a number in (${lo}, ${hi}), got ${show(v)}` };
  return null;
}

const first = (...checks: (() => ConfigProblem | null)[]): ConfigProblem | null => {
  for (const c of checks) {
    const p = c();
    if (p) return p;
  }
  return null;
};

/** Defaults every supported scheduler class shares (diffusers): what a missing key means when betas are compared. */
const DEFAULT_BETAS = { beta_start: 0.0001, beta_end: 0.02 };

/**
 * The first value of a parsed scheduler_config.json out of range, or null. Types and enum values are the schedulers'
 * own schemas' business (scheduler.ts, schedulers/config.ts); this bounds what they let through.
 */
export function schedulerConfigProblem(json: unknown): ConfigProblem | null {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { key: '(file)', message: 'must be a JSON object' };
  const cfg = json as Json;
  return first(
    () => nonFinite(cfg, ''),
    () => integerIn(cfg, 'num_train_timesteps', 1, MAX_TRAIN_TIMESTEPS),
    () => openInterval(cfg, 'beta_start', 0, 1),
    () => openInterval(cfg, 'beta_end', 0, 1),
    () => {
      // Betas from beta_start and beta_end (linear, scaled_linear) must grow; cosine and trained betas ignore both.
      const trained = cfg.trained_betas !== undefined && cfg.trained_betas !== null;
      if (trained || cfg.beta_schedule === 'squaredcos_cap_v2') return null;
      const start = typeof cfg.beta_start === 'number' ? cfg.beta_start : DEFAULT_BETAS.beta_start;
      const end = typeof cfg.beta_end === 'number' ? cfg.beta_end : DEFAULT_BETAS.beta_end;
      return start < end ? null : { key: 'beta_start', message: `must be less than beta_end (${show(end)}), got ${show(start)}` };
    },
    () => {
      const betas = cfg.trained_betas;
      if (betas === undefined || betas === null) return null;
      const steps = typeof cfg.num_train_timesteps === 'number' ? cfg.num_train_timesteps : 1000;
      if (!Array.isArray(betas)) return { key: 'trained_betas', message: `must be a list of numbers or null, got ${show(betas)}` };
      if (betas.length !== steps) return { key: 'trained_betas', message: `must have num_train_timesteps (${steps}) entries, got ${betas.length}` };
      for (let i = 0; i < betas.length; i++) {
        const b: unknown = betas[i];
        if (typeof b !== 'number' || !(b > 0 && b < 1)) return { key: `trained_betas[${i}]`, message: `must be a number in (0, 1), got ${show(b)}` };
      }
      return null;
    },
    () => integerIn(cfg, 'steps_offset', 0, MAX_TRAIN_TIMESTEPS),
    () => {
      const v = cfg.disable_corrector;
      if (!Array.isArray(v) || v.length <= MAX_TRAIN_TIMESTEPS) return null;
      return { key: 'disable_corrector', message: `must have at most ${MAX_TRAIN_TIMESTEPS} entries, got ${v.length}` };
    },
  );
}

/** The first value of a parsed unet/config.json out of range, or null. */
export function unetConfigProblem(json: unknown): ConfigProblem | null {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { key: '(file)', message: 'must be a JSON object' };
  const cfg = json as Json;
  return first(
    () => nonFinite(cfg, ''),
    () => levels(cfg, 'block_out_channels'),
    () => integersIn(cfg, 'sample_size', 1, 4096),
    () => integerIn(cfg, 'in_channels', 1, 256),
    () => integerIn(cfg, 'out_channels', 1, 256),
    () => integerIn(cfg, 'cross_attention_dim', 1, MAX_CHANNELS),
    () => integersIn(cfg, 'attention_head_dim', 1, MAX_CHANNELS),
    () => integersIn(cfg, 'num_attention_heads', 1, MAX_CHANNELS),
    () => integersIn(cfg, 'layers_per_block', 1, 64),
    () => integerIn(cfg, 'norm_num_groups', 1, MAX_CHANNELS),
  );
}

/** The first value of a parsed vae_decoder/config.json out of range, or null. */
export function vaeConfigProblem(json: unknown): ConfigProblem | null {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { key: '(file)', message: 'must be a JSON object' };
  const cfg = json as Json;
  return first(
    () => nonFinite(cfg, ''),
    () => levels(cfg, 'block_out_channels'),
    () => integersIn(cfg, 'sample_size', 1, 32_768),
    () => integerIn(cfg, 'latent_channels', 1, 256),
    () => integerIn(cfg, 'in_channels', 1, 256),
    () => integerIn(cfg, 'out_channels', 1, 256),
    () => integersIn(cfg, 'layers_per_block', 1, 64),
    () => integerIn(cfg, 'norm_num_groups', 1, MAX_CHANNELS),
    () => openInterval(cfg, 'scaling_factor', 0, 1000),
  );
}

/** "num_train_timesteps must be an integer from 1 to 10000, got 1000000000". */
export function describeProblem(p: ConfigProblem): string {
  return `${p.key} ${p.message}`;
}
