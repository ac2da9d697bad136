import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT } from '../helpers/graphs.js';
import { tinyWorkspace, type TinyWorkspace } from '../helpers/tiny-models.js';
import { inspectModelFolder, ModelConfigError } from '../../server/sd/model-folder.js';
import { parseSchedulerConfig } from '../../server/sd/scheduler.js';
import { resolveSamplerConfig } from '../../server/sd/schedulers/config.js';

/**
 * Every scheduler, UNet and VAE config value has a range, checked when the folder is read (issue 27): a 1e9
 * num_train_timesteps froze the server, beta_end 5 gave a black image, a 64-level UNet asked for sizes that are
 * "a multiple of 9223372036854776000". Each refusal names the file and the key.
 */
describe('model folder configs: values out of range are refused naming file and key (issue 27)', () => {
  let ws: TinyWorkspace;
  const bad: Record<string, { part: 'scheduler' | 'unet' | 'vae_decoder'; edit: Record<string, unknown>; key: RegExp }> = {
    timesteps: { part: 'scheduler', edit: { num_train_timesteps: 1e9 }, key: /num_train_timesteps must be an integer from 1 to 10000, got 1000000000/ },
    fractional: { part: 'scheduler', edit: { num_train_timesteps: 999.5 }, key: /num_train_timesteps must be an integer/ },
    'beta-end-5': { part: 'scheduler', edit: { beta_end: 5 }, key: /beta_end must be a number in \(0, 1\), got 5/ },
    'betas-reversed': { part: 'scheduler', edit: { beta_start: 0.02, beta_end: 0.001 }, key: /beta_start must be less than beta_end \(0\.001\), got 0\.02/ },
    infinite: { part: 'scheduler', edit: { beta_end: '__INF__' }, key: /beta_end must be a finite number/ },
    'trained-short': { part: 'scheduler', edit: { trained_betas: [0.1, 0.2] }, key: /trained_betas must have num_train_timesteps \(1000\) entries, got 2/ },
    'trained-range': { part: 'scheduler', edit: { num_train_timesteps: 3, trained_betas: [0.1, 1.5, 0.2] }, key: /trained_betas\[1\] must be a number in \(0, 1\), got 1\.5/ },
    'unet-levels': { part: 'unet', edit: { block_out_channels: Array.from({ length: 64 }, () => 32) }, key: /block_out_channels must be a list of 1 to 8 channel counts .*got 64 entries/ },
    'unet-width': { part: 'unet', edit: { block_out_channels: [32, 1e12] }, key: /block_out_channels\[1\] must be an integer from 1 to 65536/ },
    'unet-sample': { part: 'unet', edit: { sample_size: 1e15 }, key: /sample_size must be an integer from 1 to 4096/ },
    'vae-levels': { part: 'vae_decoder', edit: { block_out_channels: [] }, key: /block_out_channels must be a list of 1 to 8/ },
    'vae-scaling': { part: 'vae_decoder', edit: { scaling_factor: -1 }, key: /scaling_factor must be a number in \(0, 1000\), got -1/ },
  };
  const fileOf = (name: string): string => {
    const part = bad[name]!.part;
    return path.join(ws.models, name, part, part === 'scheduler' ? 'scheduler_config.json' : 'config.json');
  };
  before(async () => {
    ws = await tinyWorkspace({ good: {}, ...Object.fromEntries(Object.keys(bad).map((n) => [n, {}])) });
    for (const name of Object.keys(bad)) {
      const file = fileOf(name);
      const json = JSON.parse(await readFile(file, 'utf8').catch(() => '{}')) as Record<string, unknown>;
      // 1e400 is valid JSON that parses to Infinity, which JSON.stringify cannot write.
      await writeFile(file, JSON.stringify({ ...json, ...bad[name]!.edit }).replace('"__INF__"', '1e400'));
    }
  });
  after(() => ws?.cleanup());

  it('a tiny model and the committed demo models pass', async () => {
    await inspectModelFolder(path.join(ws.models, 'good'));
    for (const demo of ['general', 'cartoon']) await inspectModelFolder(path.join(REPO_ROOT, 'models', 'demo', demo));
  });

  for (const name of Object.keys(bad)) {
    it(`${name}: the folder reader refuses it, naming the file and the key`, async () => {
      const err = await inspectModelFolder(path.join(ws.models, name)).then(() => null, (e: unknown) => e);
      assert.ok(err instanceof ModelConfigError, `refused with a ModelConfigError, got ${String(err)}`);
      assert.equal(err.file, fileOf(name));
      assert.ok(err.message.startsWith(`${fileOf(name)}: `), err.message);
      assert.match(err.message, bad[name]!.key);
    });
  }

  it('the scheduler parsers refuse the same values (fusegraph schedule, samplers)', () => {
    assert.throws(() => parseSchedulerConfig({ num_train_timesteps: 1e9 }), /num_train_timesteps must be an integer from 1 to 10000/);
    assert.throws(() => parseSchedulerConfig({ beta_end: 5 }), /beta_end must be a number in \(0, 1\)/);
    assert.throws(() => resolveSamplerConfig('euler', { num_train_timesteps: 1e9 }), /num_train_timesteps must be an integer from 1 to 10000/);
    assert.throws(() => resolveSamplerConfig('dpmpp_2m', { beta_start: 0.5, beta_end: 0.1 }), /beta_start must be less than beta_end/);
    // Cosine betas ignore beta_start and beta_end, so their order does not matter there.
    assert.equal(parseSchedulerConfig({ beta_schedule: 'squaredcos_cap_v2', beta_start: 0.5, beta_end: 0.1 }).beta_schedule, 'squaredcos_cap_v2');
  });
});
