/**
 * Checkpoint files in the editor: LoadModel's path offers checkpoints beside folders (not VAE files), its vae field
 * offers VAE files and is not flagged when empty, and a VAE the server lacks is flagged as soon as it is typed.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { REPO_ROOT } from '../helpers/graphs.js';
import type { Harness } from './harness.js';
import { browserSuiteSkip, openTemplate, screenshot, startHarness } from './harness.js';

const SUITE = 'checkpoints in the editor (Chromium, real server)';
const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'checkpoints');

describe(SUITE, { skip: browserSuiteSkip(SUITE) }, () => {
  let h: Harness;
  let page: Page;
  before(async () => {
    h = await startHarness();
    page = h.page;
    await mkdir(path.join(h.ws.models, 'checkpoints'), { recursive: true });
    await copyFile(path.join(FIXTURES, 'tiny-sd1.ckpt'), path.join(h.ws.models, 'checkpoints', 'tiny-sd1.ckpt'));
    await copyFile(path.join(FIXTURES, 'tiny-vae.safetensors'), path.join(h.ws.models, 'checkpoints', 'tiny-vae.safetensors'));
    await page.goto(h.server.url);
    await page.waitForSelector('.fg-node');
  });
  after(async () => {
    await h?.close();
  });

  it('offers checkpoints as models and VAE files as VAEs, flagging only what the server lacks', async () => {
    await openTemplate(page, 'demo-fusion');
    const loader = page.locator('.fg-node', { has: page.locator('[data-param="vae"]') }).first();
    await loader.waitFor();
    const options = (param: string) => loader.locator(`[data-param="${param}"] datalist option`).evaluateAll((els) => els.map((e) => e.getAttribute('value')));
    // The listing is asked for when the graph opens; wait for the checkpoint to be in it.
    await page.waitForFunction(() => [...document.querySelectorAll('[data-param="path"] datalist option')].some((o) => o.getAttribute('value') === 'checkpoints/tiny-sd1.ckpt'));
    const models = await options('path');
    assert.ok(models.includes('checkpoints/tiny-sd1.ckpt') && models.includes('demo/general'), models.join(', '));
    assert.ok(!models.includes('checkpoints/tiny-vae.safetensors'), 'a VAE file is not offered as a model');
    const vaes = await options('vae');
    assert.ok(vaes.includes('checkpoints/tiny-vae.safetensors'), vaes.join(', '));
    assert.equal(await loader.locator('[data-param="vae"] [data-testid=field-warning]').count(), 0, 'an empty vae is the model\'s own');
    await loader.locator('[data-param="vae"] input').fill('checkpoints/missing-vae.safetensors');
    await loader.locator('[data-param="vae"] [data-testid=field-warning]').waitFor();
    await loader.locator('[data-param="vae"] input').fill('checkpoints/tiny-vae.safetensors');
    await loader.locator('[data-param="vae"] [data-testid=field-warning]').waitFor({ state: 'detached' });
    await screenshot(page, 'checkpoint-dropdowns');
  });
});
