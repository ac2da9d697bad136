import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import type { Graph } from '../../nodes/graph-format.js';
import type { ServerOptions } from '../../server/http/options.js';
import type { RunningServer } from '../../server/http/start.js';
import { startServer } from '../../server/http/start.js';
import type { TinyWorkspace } from '../helpers/tiny-models.js';
import { tinyWorkspace } from '../helpers/tiny-models.js';

export const CHROMIUM = '/usr/bin/chromium';
export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const SHOTS = path.join(REPO, 'test-output');
export const VIEWPORTS = [{ width: 1280, height: 800 }, { width: 1920, height: 1080 }] as const;

/**
 * The `skip` option of a browser suite. Without Chromium the suite is skipped, and says so by name in the output;
 * in CI (CI=true) a missing Chromium is a failure instead, so a broken image cannot pass by testing nothing.
 */
export function browserSuiteSkip(suite: string): string | false {
  if (existsSync(CHROMIUM)) return false;
  if (process.env.CI === 'true') return false;
  const reason = `Chromium not found at ${CHROMIUM}; install it with "apt-get install -y chromium" to run it`;
  console.log(`# SKIPPED SUITE "${suite}": ${reason}`);
  return reason;
}

/** Every file the client bundle is built from: what the hash of a build covers. */
async function clientSources(): Promise<string[]> {
  const files: string[] = [path.join(REPO, 'vite.config.ts'), path.join(REPO, 'package-lock.json')];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else files.push(p);
    }
  };
  await walk(path.join(REPO, 'client'));
  await walk(path.join(REPO, 'nodes'));
  return files.sort();
}

/**
 * Builds the editor from the sources being tested, never reusing dist/client (which may be stale). The build lands
 * in a folder named by the hash of those sources, so the e2e files of one test run share one build, and an edit
 * always gets a fresh one. Concurrent builders write to their own folder and rename it into place.
 */
export async function buildClient(): Promise<string> {
  const hash = createHash('sha256');
  for (const f of await clientSources()) {
    hash.update(path.relative(REPO, f));
    hash.update(await readFile(f));
  }
  const dir = path.join(tmpdir(), `fusegraph-client-${hash.digest('hex').slice(0, 16)}`);
  if (existsSync(path.join(dir, 'index.html'))) return dir;
  const work = `${dir}.${process.pid}`;
  const { build } = await import('vite');
  await build({ configFile: path.join(REPO, 'vite.config.ts'), logLevel: 'warn', build: { outDir: work, emptyOutDir: true } });
  try {
    await rename(work, dir);
  } catch {
    // Another process built the same sources first; its build is the same.
    await rm(work, { recursive: true, force: true });
  }
  assert.ok((await stat(path.join(dir, 'index.html'))).isFile());
  return dir;
}

export interface Harness {
  readonly ws: TinyWorkspace;
  readonly server: RunningServer;
  readonly browser: Browser;
  readonly page: Page;
  /** Console errors and page errors the page logged. */
  readonly consoleErrors: string[];
  close(): Promise<void>;
}

/**
 * A real server on tiny models named like the demo graph's (models/demo/general, models/demo/cartoon), serving a
 * fresh build of the editor, and one Chromium page on it.
 */
export async function startHarness(options: Partial<ServerOptions> = {}): Promise<Harness> {
  const clientDir = await buildClient();
  const ws = await tinyWorkspace({ 'demo/general': { seed: 1 }, 'demo/cartoon': { seed: 2 } });
  const server = await startServer({
    port: 0,
    modelsRoot: ws.models,
    inputRoot: ws.input,
    outputRoot: ws.output,
    dataDir: path.join(ws.root, 'data'),
    clientDir,
    previewEvery: 2,
    log: () => {},
    ...options,
  });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const page = await browser.newPage({ viewport: VIEWPORTS[0], acceptDownloads: true });
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
  await mkdir(SHOTS, { recursive: true });
  return {
    ws, server, browser, page, consoleErrors,
    close: async () => {
      await browser.close();
      await server.close();
      await ws.cleanup();
    },
  };
}

export async function api(server: RunningServer, route: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${server.url}${route}`, body === undefined
    ? {}
    : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  assert.ok(res.ok, `${route}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

/** The editor's zoom, read from the transform of the area's content layer. */
export async function canvasZoom(page: Page): Promise<number> {
  return page.evaluate(() => {
    const holder = document.querySelector('[data-testid=canvas] > div') as HTMLElement | null;
    const m = /scale\(([\d.e-]+)\)/.exec(holder?.style.transform ?? '');
    return m ? Number(m[1]) : Number.NaN;
  });
}

/** Exports the graph through the Export button, as a user would. */
export async function exportGraph(page: Page): Promise<Graph> {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=export]')]);
  return JSON.parse(await readFile(await download.path(), 'utf8')) as Graph;
}

export async function setParam(page: Page, node: string, param: string, value: string): Promise<void> {
  const field = page.locator(`[data-node-id="${node}"] [data-param="${param}"]`).locator('input, textarea').first();
  await field.fill(value);
  await field.press('Tab');
}

export async function openTemplate(page: Page, name: string): Promise<void> {
  await page.click('text=Templates ▾');
  await page.click(`[data-template="${name}"]`);
}

export interface Rect { x: number; y: number; width: number; height: number }

export async function rect(page: Page, selector: string): Promise<Rect> {
  const b = await page.locator(selector).first().boundingBox();
  assert.ok(b, selector);
  return b;
}

/** A point of bare canvas inside the canvas rectangle, found by probing a grid (no fixed coordinates). */
export async function emptyPoint(page: Page): Promise<{ x: number; y: number }> {
  const p = await page.evaluate(() => {
    const c = document.querySelector('[data-testid=canvas]')!.getBoundingClientRect();
    for (let fy = 0.15; fy < 0.9; fy += 0.05) {
      for (let fx = 0.1; fx < 0.9; fx += 0.05) {
        const x = c.x + c.width * fx;
        const y = c.y + c.height * fy;
        const el = document.elementFromPoint(x, y);
        if (el?.closest('[data-testid=canvas]') && !el.closest('.fg-node, .fg-connection, .fg-menu, [data-testid=minimap], .fg-group, .fg-note')) return { x, y };
      }
    }
    return null;
  });
  assert.ok(p, 'some bare canvas is in view');
  return p;
}

/** Pans the canvas (drags bare canvas, as a user would) until `selector` sits near its top-left corner at the current zoom. */
export async function panTo(page: Page, selector: string): Promise<void> {
  for (let i = 0; i < 8; i++) {
    const node = await rect(page, selector);
    const canvas = await rect(page, '[data-testid=canvas]');
    const dx = node.x - (canvas.x + 80);
    const dy = node.y - (canvas.y + 80);
    if (Math.abs(dx) < 40 && Math.abs(dy) < 40) return;
    const p = await emptyPoint(page);
    const step = {
      x: Math.max(-(canvas.x + canvas.width - p.x - 10), Math.min(p.x - canvas.x - 10, dx)),
      y: Math.max(-(canvas.y + canvas.height - p.y - 10), Math.min(p.y - canvas.y - 10, dy)),
    };
    await page.mouse.move(p.x, p.y);
    await page.mouse.down();
    await page.mouse.move(p.x - step.x, p.y - step.y, { steps: 8 });
    await page.mouse.up();
  }
}
