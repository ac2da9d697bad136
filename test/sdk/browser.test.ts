import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import type * as Sdk from '../../sdk/index.js';
import type { RunningServer } from '../../server/http/start.js';
import { bundledGraph, REPO_ROOT } from '../helpers/graphs.js';
import { makeSandbox, startIn, type Sandbox } from '../server/helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `Chromium not found at ${CHROMIUM}; install it with "apt-get install -y chromium" to run the browser client test`;
const TOKEN = 'browser-token';

/**
 * The client library in a real browser: the browser's WebSocket (no headers, so `?token=` plus an `auth` frame),
 * fetch and atob, bundled as a bundler would (the Node-only `ws` import is never reached).
 */
describe('fusegraph/client in Chromium', { skip }, () => {
  let sandbox: Sandbox;
  let server: RunningServer;
  let browser: Browser;
  let bundle: string;

  before(async () => {
    const out = await build({
      entryPoints: [path.join(REPO_ROOT, 'sdk', 'index.ts')], bundle: true, format: 'iife', globalName: 'FuseGraph',
      platform: 'browser', write: false, logLevel: 'silent',
    });
    bundle = out.outputFiles[0]!.text;
    sandbox = await makeSandbox();
    server = await startIn(sandbox, { modelsRoot: path.join(REPO_ROOT, 'models'), token: TOKEN });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });

  after(async () => {
    await browser?.close();
    await server?.close();
    await sandbox?.remove();
  });

  it('renders the demo fusion, cancels a run and validates a graph from a web page', async () => {
    const page = await browser.newPage();
    await page.goto(`${server.url}/`);
    await page.addScriptTag({ content: bundle });
    const graph = bundledGraph('demo-fusion');
    for (const node of Object.values(graph.nodes)) if (node.type === 'DDIMStep') node.params = { ...node.params, steps: 4 };
    const result = await page.evaluate(async ({ url, token, graph }) => {
      const { connect, RunCancelledError, InvalidGraphError } = (globalThis as unknown as { FuseGraph: typeof Sdk }).FuseGraph;
      const client = await connect(url, { token });
      await client.pause(); // a control frame: needs the in-band token, as the URL token alone only reads
      const doomed = client.run(graph);
      await doomed.accepted;
      await doomed.cancel();
      const cancelled = await doomed.done.then(() => false, (e: unknown) => e instanceof RunCancelledError);
      await client.resume();
      const handle = client.run(graph);
      const steps: number[] = [];
      for await (const f of handle.events) if (f.type === 'progress') steps.push(f.step);
      const images = await handle.images(); // fetched over HTTP with the token
      const bad = structuredClone(graph);
      bad.nodes.noise!.params = { ...bad.nodes.noise!.params, width: 1 };
      const refused = await client.run(bad).done.catch((e: unknown) => (e instanceof InvalidGraphError ? e.issues.map((i) => `${i.node}.${i.field}`) : String(e)));
      await client.close();
      return { cancelled, steps: steps.length, images: images.map((i) => [i.node, i.bytes[1], i.bytes.length]), refused };
    }, { url: server.url, token: TOKEN, graph });
    assert.equal(result.cancelled, true);
    assert.ok(result.steps > 0);
    // 0x50 = 'P' of the PNG signature: real image bytes reached the page.
    assert.deepEqual(result.images.map(([node, p]) => [node, p]).sort(), [['save_expert', 0x50], ['save_fused', 0x50], ['save_general', 0x50]]);
    assert.deepEqual(result.refused, ['noise.params.width']);
  });
});
