import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import type { Graph } from '../../nodes/graph-format.js';
import type { RunningServer } from '../../server/http/start.js';
import { startServer } from '../../server/http/start.js';
import { writeTinyModel } from '../../tools/tiny-models/make-tiny-model.js';

import { browserSuiteSkip, buildClient, CHROMIUM, SHOTS } from './harness.js';

const SUITE = 'editor end to end (Chromium, real server, tiny models)';
const TEMPLATE = 'magicfusion-cross-domain';
const STEPS = '6';
const SIZE = '64';


async function setParam(page: Page, node: string, param: string, value: string): Promise<void> {
  const field = page.locator(`[data-node-id="${node}"] [data-param="${param}"]`).locator('input, textarea').first();
  await field.fill(value);
  await field.press('Tab');
}

/** True when (x, y) is bare canvas: no node, link, menu or minimap under the pointer. */
async function isBackground(page: Page, x: number, y: number): Promise<boolean> {
  return page.evaluate(([px, py]) => {
    const el = document.elementFromPoint(px as number, py as number);
    return !!el?.closest('[data-testid=canvas]') && !el.closest('.fg-node, .fg-connection, .fg-menu, [data-testid=minimap]');
  }, [x, y]);
}

async function box(page: Page, selector: string): Promise<{ x: number; y: number; width: number; height: number }> {
  const b = await page.locator(selector).boundingBox();
  assert.ok(b, selector);
  return b;
}

async function nodeIds(page: Page, type: string): Promise<string[]> {
  return page.locator(`.fg-node[data-node-type="${type}"]`).evaluateAll((els) => els.map((e) => e.getAttribute('data-node-id') ?? ''));
}

describe(SUITE, { skip: browserSuiteSkip(SUITE) }, () => {
  let root: string;
  let server: RunningServer;
  let browser: Browser;
  let page: Page;
  const consoleErrors: string[] = [];

  before(async () => {
    const clientDir = await buildClient();
    root = await mkdtemp(path.join(tmpdir(), 'fusegraph-e2e-'));
    const models = path.join(root, 'models');
    await writeTinyModel(path.join(models, 'general'), { seed: 1 });
    await writeTinyModel(path.join(models, 'cartoon'), { seed: 2 });
    await mkdir(path.join(root, 'input'), { recursive: true });
    server = await startServer({
      port: 0,
      modelsRoot: models,
      inputRoot: path.join(root, 'input'),
      outputRoot: path.join(root, 'output'),
      dataDir: path.join(root, 'data'),
      clientDir,
      previewEvery: 2,
      log: () => {},
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
    await mkdir(SHOTS, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    await server?.close();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('opens the demo graph on first load, built from the server node list', async () => {
    await page.goto(server.url);
    await page.waitForSelector('[data-node-id="sample_fused"]');
    assert.match((await page.locator('.fg-graph-name').textContent()) ?? '', /Demo/);
    // The palette lists exactly what /api/nodes announced.
    const defs = (await (await fetch(`${server.url}/api/nodes`)).json()) as { nodes: { type: string }[] };
    const palette = await page.locator('.fg-palette-item').evaluateAll((els) => els.map((e) => e.getAttribute('data-node-type')));
    assert.deepStrictEqual([...palette].sort(), defs.nodes.map((d) => d.type).sort());
  });

  it('runs the cross-domain template with edited params and exports what the server ran', async () => {
    await page.click('text=Templates ▾');
    await page.click(`[data-template="${TEMPLATE}"]`);
    await page.waitForFunction(() => /cross-domain/.test(document.querySelector('.fg-graph-name')?.textContent ?? ''));

    await setParam(page, 'base_prompt', 'text', 'A lion with a golden crown, photo');
    await setParam(page, 'schedule', 't', '700');
    await setParam(page, 'base_model', 'path', 'general');
    await setParam(page, 'other_model', 'path', 'cartoon');
    for (const id of ['sample_fused', 'sample_base', 'sample_other']) await setParam(page, id, 'steps', STEPS);
    await setParam(page, 'noise', 'width', SIZE);
    await setParam(page, 'noise', 'height', SIZE);

    await page.click('[data-testid=run]');
    const run = page.locator('.fg-gallery-run').first();
    await run.locator('.fg-thumb img').nth(2).waitFor({ timeout: 120_000 });
    await page.waitForFunction(() => document.querySelector('[data-testid=run-status]')?.textContent === 'done', null, { timeout: 60_000 });
    const runId = await run.getAttribute('data-run-id');
    assert.ok(runId);
    assert.equal(await run.locator('.fg-thumb img').count(), 3);

    // Per-node results on the canvas: states, the sampler's progress bar and preview, the saved images.
    assert.equal(await page.locator('[data-node-id="sample_fused"]').getAttribute('data-state'), 'done');
    assert.match((await page.locator('[data-node-id="sample_fused"] .fg-progress-text').textContent()) ?? '', new RegExp(`step ${STEPS}/${STEPS}`));
    assert.equal(await page.locator('[data-node-id="sample_fused"] .fg-preview').count(), 1);
    for (const id of ['save_general', 'save_expert', 'save_fused']) {
      assert.equal(await page.locator(`[data-node-id="${id}"] .fg-node-images img`).count(), 1, id);
    }

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export]')]);
    const exported = JSON.parse(await readFile(await download.path(), 'utf8')) as Graph;
    const detail = (await (await fetch(`${server.url}/api/runs/${runId}`)).json()) as { graph: Graph };
    assert.deepStrictEqual(exported, detail.graph);
    assert.equal(exported.nodes.base_prompt?.params?.text, 'A lion with a golden crown, photo');
    assert.equal(exported.nodes.schedule?.params?.t, 700);
    assert.equal(exported.nodes.sample_other?.params?.steps, Number(STEPS));
    assert.deepStrictEqual(exported.nodes.base_prompt?.ui, { x: 300, y: 0 });

    await page.locator('[data-node-id="sample_fused"]').scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SHOTS, 'editor-run.png') });
    await page.mouse.click(640, 760);
    await page.keyboard.press('f');
    await page.waitForTimeout(300);
    await page.screenshot({ path: path.join(SHOTS, 'editor-fit.png') });
  });

  it('refuses an incompatible link with a toast, undoes an add, and keeps the graph over a reload', async () => {
    const before = await page.locator('.fg-node').count();
    await page.click('.fg-palette-item[data-node-type="SaveImage"]');
    await page.waitForSelector('[data-node-id="save_image_1"]');

    const from = await page.locator('[data-node-id="save_image_1"] .fg-port-input[data-key="image"] .fg-socket').boundingBox();
    const to = await page.locator('[data-node-id="noise"] .fg-port-output[data-key="latent"] .fg-socket').boundingBox();
    assert.ok(from && to);
    await page.mouse.move(from.x + from.width / 2, from.y + from.height / 2);
    await page.mouse.down();
    await page.mouse.move(to.x + to.width / 2, to.y + to.height / 2, { steps: 10 });
    await page.mouse.up();
    await page.locator('[data-testid=toast]', { hasText: 'Cannot connect LATENT to IMAGE' }).waitFor();

    await page.mouse.click(640, 760);
    await page.keyboard.press('Control+z');
    await page.waitForFunction((n) => document.querySelectorAll('.fg-node').length === n, before);

    await page.waitForTimeout(400);
    await page.reload();
    await page.waitForSelector('[data-node-id="sample_fused"]');
    assert.equal(await page.locator('.fg-node').count(), before);
    assert.equal(await page.locator('[data-node-id="schedule"] [data-param="t"] input').inputValue(), '700');
  });

  it('drops a link on empty canvas, offers only the node types that fit, and links the one picked', async () => {
    const socket = await box(page, '[data-node-id="base_model"] .fg-port-output[data-key="model"] .fg-socket');
    const node = await box(page, '[data-node-id="base_model"]');
    const drop = { x: node.x + node.width / 2, y: node.y + node.height + 40 };
    assert.ok(await isBackground(page, drop.x, drop.y), 'the drop point is empty canvas');
    const dragLink = async () => {
      await page.mouse.move(socket.x + socket.width / 2, socket.y + socket.height / 2);
      await page.mouse.down();
      await page.mouse.move(drop.x, drop.y, { steps: 10 });
      await page.mouse.up();
      await page.locator('[data-testid=context-menu]').waitFor();
    };

    // Escape closes the menu and adds nothing.
    const before = await nodeIds(page, 'EncodePrompt');
    await dragLink();
    await page.keyboard.press('Escape');
    await page.locator('[data-testid=context-menu]').waitFor({ state: 'detached' });
    assert.deepStrictEqual(await nodeIds(page, 'EncodePrompt'), before);

    await dragLink();
    const menu = page.locator('[data-testid=context-menu]');
    const menuBox = await menu.boundingBox();
    assert.ok(menuBox && Math.abs(menuBox.x - drop.x) < 4 && Math.abs(menuBox.y - drop.y) < 4, 'the menu opens at the drop point');
    const listed = await menu.locator('.fg-menu-item').evaluateAll((els) => els.map((e) => e.getAttribute('data-key')));
    const defs = (await (await fetch(`${server.url}/api/nodes`)).json()) as { nodes: { type: string; inputs: Record<string, { type: string }> }[] };
    const withModelInput = defs.nodes.filter((d) => Object.values(d.inputs).some((i) => i.type === 'MODEL')).map((d) => d.type);
    assert.deepStrictEqual([...listed].sort(), [...withModelInput].sort());
    await page.screenshot({ path: path.join(SHOTS, 'editor-link-drop-menu.png') });

    await menu.locator('.fg-menu-search').fill('encode');
    assert.deepStrictEqual(await menu.locator('.fg-menu-item').evaluateAll((els) => els.map((e) => e.getAttribute('data-key'))), ['EncodePrompt']);
    await menu.locator('.fg-menu-item[data-key="EncodePrompt"]').click();
    await page.waitForFunction((n) => document.querySelectorAll('.fg-node[data-node-type="EncodePrompt"]').length === n, before.length + 1);
    const added = (await nodeIds(page, 'EncodePrompt')).filter((id) => !before.includes(id));
    assert.equal(added.length, 1);
    const addedId = added[0] as string;
    const placed = await box(page, `[data-node-id="${addedId}"]`);
    assert.ok(Math.abs(placed.x - drop.x) < 10, 'the new node starts at the drop point');
    await page.screenshot({ path: path.join(SHOTS, 'editor-link-drop-added.png') });

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export]')]);
    const exported = JSON.parse(await readFile(await download.path(), 'utf8')) as Graph;
    assert.deepStrictEqual(exported.nodes[addedId]?.inputs, { model: { node: 'base_model', output: 'model' } });

    // One undo takes back the whole drop (the node and its link); one redo brings both back.
    await page.click('[data-testid=undo]');
    await page.locator(`[data-node-id="${addedId}"]`).waitFor({ state: 'detached' });
    assert.deepStrictEqual(await nodeIds(page, 'EncodePrompt'), before);
    await page.click('[data-testid=redo]');
    await page.locator(`[data-node-id="${addedId}"]`).waitFor();
    const [redone] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export]')]);
    assert.deepStrictEqual((JSON.parse(await readFile(await redone.path(), 'utf8')) as Graph).nodes[addedId]?.inputs, { model: { node: 'base_model', output: 'model' } });

    // Delete takes it (and its link) away again.
    await page.click(`[data-node-id="${addedId}"] .fg-node-title`);
    await page.keyboard.press('Delete');
    await page.locator(`[data-node-id="${addedId}"]`).waitFor({ state: 'detached' });
  });

  it('selects the nodes a Shift+drag box touches, and deletes them as a selection', async () => {
    const a = await box(page, '[data-node-id="base_model"]');
    const b = await box(page, '[data-node-id="other_model"]');
    const start = { x: Math.max(a.x + a.width, b.x + b.width) + 8, y: a.y - 8 };
    const end = { x: a.x + a.width / 2, y: b.y + b.height + 8 };
    assert.ok(await isBackground(page, start.x, start.y), 'the box starts on empty canvas');

    await page.keyboard.down('Shift');
    await page.mouse.move(start.x, start.y);
    await page.mouse.down();
    await page.mouse.move(end.x, end.y, { steps: 10 });
    const drawn = await box(page, '[data-testid=select-box]');
    assert.ok(Math.abs(drawn.width - (start.x - end.x)) < 2 && Math.abs(drawn.height - (end.y - start.y)) < 2, 'the box is drawn corner to corner');
    await page.screenshot({ path: path.join(SHOTS, 'editor-box-select.png') });
    await page.mouse.up();
    await page.keyboard.up('Shift');
    assert.equal(await page.locator('[data-testid=select-box]').count(), 0);

    const selected = await page.locator('.fg-node.fg-selected').evaluateAll((els) => els.map((e) => e.getAttribute('data-node-id')));
    assert.deepStrictEqual([...selected].sort(), ['base_model', 'other_model']);
    // The view did not pan while the box was drawn.
    assert.deepStrictEqual(await box(page, '[data-node-id="base_model"]'), a);
    await page.screenshot({ path: path.join(SHOTS, 'editor-box-selected.png') });

    const count = await page.locator('.fg-node').count();
    await page.keyboard.press('Delete');
    await page.waitForFunction((n) => document.querySelectorAll('.fg-node').length === n, count - 2);
    await page.keyboard.press('Control+z');
    await page.waitForFunction((n) => document.querySelectorAll('.fg-node').length === n, count);
  });

  it('logged no console errors', () => {
    assert.deepStrictEqual(consoleErrors, []);
  });
});
