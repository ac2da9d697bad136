import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import type { TemplateInfo } from '../../nodes/protocol.js';
import { READABLE_ZOOM } from '../../client/editor/placement.js';
import type { Harness, Rect } from './harness.js';
import { api, browserSuiteSkip, canvasZoom, emptyPoint, exportGraph, openTemplate, panTo, rect, screenshot, SHOTS, startHarness, VIEWPORTS } from './harness.js';

const SUITE = 'editor habits (Chromium, real server, tiny models)';

async function nodeRects(page: Page): Promise<Rect[]> {
  return page.locator('.fg-node').evaluateAll((els) => els.map((e) => {
    const r = e.getBoundingClientRect();
    return { x: r.x, y: r.y, width: r.width, height: r.height };
  }));
}

const inside = (r: Rect, c: Rect) => r.x >= c.x - 1 && r.y >= c.y - 1 && r.x + r.width <= c.x + c.width + 1 && r.y + r.height <= c.y + c.height + 1;
const overlap = (a: Rect, b: Rect) => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;

async function waitGraph(page: Page, pattern: RegExp): Promise<void> {
  await page.waitForFunction((src) => new RegExp(src, 'i').test(document.querySelector('.fg-graph-name')?.textContent ?? ''), pattern.source);
}

describe(SUITE, { skip: browserSuiteSkip(SUITE) }, () => {
  let h: Harness;
  let page: Page;
  let templates: TemplateInfo[];

  before(async () => {
    h = await startHarness();
    page = h.page;
    templates = ((await api(h.server, '/api/graphs')) as { graphs: TemplateInfo[] }).graphs;
  });

  after(async () => {
    await h?.close();
  });

  for (const v of VIEWPORTS) {
    describe(`at ${v.width}×${v.height}`, () => {
      before(async () => {
        await page.setViewportSize(v);
        await page.goto(h.server.url);
        await page.waitForSelector('.fg-node');
      });

      it('opens every template readable: fitted in the free canvas, or its left part at 100 % (16.5)', async () => {
        for (const t of templates) {
          const fits = await page.getAttribute('[data-testid=canvas]', 'data-fits');
          await openTemplate(page, t.name);
          // The fit runs once the nodes have measured themselves; the canvas counts fits.
          await page.waitForFunction((n) => document.querySelector('[data-testid=canvas]')?.getAttribute('data-fits') !== n, fits);
          const k = await canvasZoom(page);
          const canvas = await rect(page, '[data-testid=canvas]');
          const nodes = await nodeRects(page);
          // The smallest running text (11 px labels) is at least 10 px on screen.
          const label = await page.locator('.fg-param-label').first().evaluate((e) => e.getBoundingClientRect().height);
          assert.ok(k >= READABLE_ZOOM - 1e-9 && label >= 10, `${t.name} at ${v.width}: zoom ${k}, label ${label}px`);
          if (k < 1 - 1e-6 || nodes.every((n) => inside(n, canvas))) {
            assert.ok(nodes.every((n) => inside(n, canvas)), `${t.name} at ${v.width}: fitted, so every node is in the free canvas`);
          } else {
            // Too big to fit readably: its left part at 100 %, the leftmost node fully in view.
            const leftmost = nodes.reduce((a, b) => (b.x < a.x ? b : a));
            assert.ok(leftmost.x >= canvas.x && leftmost.x < canvas.x + 60, `${t.name} at ${v.width}: left edge in view`);
          }
          if (t.name === 'demo-fusion' || t.name === 'txt2img') await screenshot(page, `open-${t.name}-${v.width}`);
        }
      });

      it('collapses the palette and the queue/gallery side so the canvas gets the room (16.5)', async () => {
        const before = await rect(page, '[data-testid=canvas]');
        await page.click('[data-testid=collapse-palette]');
        await page.click('[data-testid=collapse-side]');
        await page.waitForFunction((w) => document.querySelector('[data-testid=canvas]')!.getBoundingClientRect().width > w + 300, before.width);
        await page.keyboard.press('f');
        await screenshot(page, `panels-collapsed-${v.width}`);
        await page.click('[data-testid=open-left]');
        await page.click('[data-testid=open-right]');
        await page.waitForSelector('[data-testid=queue-panel]');
        assert.equal(Math.round((await rect(page, '[data-testid=canvas]')).width), Math.round(before.width));
      });

      it('closes the Templates menu on Escape and on a canvas click (16.4)', async () => {
        await page.click('text=Templates ▾');
        await page.waitForSelector('.fg-dropdown-menu');
        await page.keyboard.press('Escape');
        await page.waitForSelector('.fg-dropdown-menu', { state: 'detached' });
        await page.click('text=Templates ▾');
        await page.waitForSelector('.fg-dropdown-menu');
        const p = await emptyPoint(page);
        await page.mouse.click(p.x, p.y);
        await page.waitForSelector('.fg-dropdown-menu', { state: 'detached' });
      });

      it('keeps one toast when templates are switched quickly (16.11)', async () => {
        for (const t of templates.slice(0, 4)) {
          await openTemplate(page, t.name);
          await waitGraph(page, new RegExp((t.meta?.name ?? t.name).slice(0, 12).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
        }
        await page.locator('[data-testid=toast]').first().waitFor();
        assert.equal(await page.locator('[data-testid=toast]').count(), 1);
        await screenshot(page, `toasts-after-switching-${v.width}`);
      });

      it('flags models the server does not have as soon as a graph opens, and offers the ones it has (16.10)', async () => {
        await openTemplate(page, 'magicfusion-cross-domain');
        await waitGraph(page, /cross-domain/);
        await page.locator('[data-testid=toast]', { hasText: 'not installed' }).waitFor();
        const warning = page.locator('[data-node-id="base_model"] [data-testid=field-warning]');
        await warning.waitFor();
        assert.match((await warning.textContent()) ?? '', /not installed.*demo\/cartoon, demo\/general/);
        const options = await page.locator('[data-node-id="base_model"] [data-param="path"] datalist option').evaluateAll((els) => els.map((e) => e.getAttribute('value')));
        assert.deepStrictEqual(options, ['demo/cartoon', 'demo/general']);
        // Picking an installed folder clears the flag while typing, before any run.
        const field = page.locator('[data-node-id="base_model"] [data-param="path"] input');
        await field.fill('demo/general');
        await warning.waitFor({ state: 'detached' });
        await screenshot(page, `models-missing-flag-${v.width}`);
        await openTemplate(page, 'demo-fusion');
        await waitGraph(page, /Demo/);
        assert.equal(await page.locator('[data-testid=field-warning]').count(), 0);
      });

      it('drops a link dragged off an input without leaving the sockets dimmed (16.3)', async () => {
        const links = () => page.locator('.fg-connection:not(.fg-connection-pseudo)').count();
        const before = await links();
        // The issue's own case: the link into sample_fused.noise (NOISE inputs were left ringed).
        await panTo(page, '[data-node-id="sample_fused"]');
        const socket = await rect(page, '[data-node-id="sample_fused"] .fg-port-input[data-key="noise"] .fg-socket');
        const p = await emptyPoint(page);
        await page.mouse.move(socket.x + socket.width / 2, socket.y + socket.height / 2);
        await page.mouse.down();
        await page.mouse.move(p.x, p.y, { steps: 10 });
        await page.mouse.up();
        // The link left the input; what can take it is offered (ComfyUI's release-on-canvas menu); Escape declines.
        await page.waitForFunction((n) => document.querySelectorAll('.fg-connection:not(.fg-connection-pseudo)').length === n - 1, before);
        await page.locator('[data-testid=context-menu]').waitFor();
        await page.keyboard.press('Escape');
        await page.locator('[data-testid=context-menu]').waitFor({ state: 'detached' });
        await page.waitForFunction(() => !document.querySelector('[data-testid=canvas]')?.hasAttribute('data-pick-type'));
        assert.equal(await page.locator('.fg-port-compatible').count(), 0);
        await screenshot(page, `link-detached-no-dim-${v.width}`);
        await page.keyboard.press('Control+z');
        await page.waitForFunction((n) => document.querySelectorAll('.fg-connection:not(.fg-connection-pseudo)').length === n, before);
      });

      it('places palette clicks side by side, not stacked (16.6)', async () => {
        const before = new Set(await page.locator('.fg-node').evaluateAll((els) => els.map((e) => e.getAttribute('data-node-id'))));
        for (let i = 0; i < 3; i++) await page.click('.fg-palette-item[data-node-type="SaveImage"]');
        await page.waitForFunction((n) => document.querySelectorAll('.fg-node').length === n, before.size + 3);
        const added = await page.locator('.fg-node').evaluateAll((els, known) => els.filter((e) => !known.includes(e.getAttribute('data-node-id') ?? ''))
          .map((e) => {
            const r = e.getBoundingClientRect();
            return { x: r.x, y: r.y, width: r.width, height: r.height };
          }), [...before] as string[]);
        assert.equal(added.length, 3);
        for (let i = 0; i < 3; i++) for (let j = i + 1; j < 3; j++) assert.ok(!overlap(added[i]!, added[j]!), `new nodes ${i} and ${j} do not overlap`);
        await screenshot(page, `palette-clicks-${v.width}`);
        for (let i = 0; i < 3; i++) await page.keyboard.press('Control+z');
        await page.waitForFunction((n) => document.querySelectorAll('.fg-node').length === n, before.size);
      });

      it('says how to start on an empty canvas, and double-click opens the node search there (16.12)', async () => {
        await page.click('text=New');
        await page.waitForSelector('[data-testid=empty-hint]');
        await screenshot(page, `empty-canvas-hint-${v.width}`);
        const p = await emptyPoint(page);
        await page.mouse.dblclick(p.x, p.y);
        const menu = page.locator('[data-testid=context-menu]');
        await menu.waitFor();
        const box = await menu.boundingBox();
        assert.ok(box && Math.abs(box.x - p.x) < 4 && Math.abs(box.y - p.y) < 4, 'the search opens where the canvas was double-clicked');
        await menu.locator('.fg-menu-search').fill('load model');
        await menu.locator('.fg-menu-search').press('Enter');
        await page.waitForSelector('.fg-node[data-node-type="LoadModel"]');
        assert.equal(await page.locator('[data-testid=empty-hint]').count(), 0);
        assert.equal(await canvasZoom(page), 1, 'double-click did not zoom');
      });

      it('bypasses, mutes, collapses, renames and colours nodes, undoably, into the v2 format', async () => {
        await openTemplate(page, 'demo-fusion');
        await waitGraph(page, /Demo/);
        await panTo(page, '[data-node-id="schedule"]');
        const node = page.locator('[data-node-id="schedule"]');
        await node.locator('.fg-node-title').click();
        await page.keyboard.press('Control+b');
        await page.waitForFunction(() => document.querySelector('[data-node-id="schedule"]')?.getAttribute('data-mode') === 'bypass');
        await page.keyboard.press('Control+m');
        await page.waitForFunction(() => document.querySelector('[data-node-id="schedule"]')?.getAttribute('data-mode') === 'mute');
        await page.keyboard.press('Control+m');
        await page.waitForFunction(() => document.querySelector('[data-node-id="schedule"]')?.getAttribute('data-mode') === 'run');
        await page.keyboard.press('Control+b');

        await node.locator('[data-testid=node-collapse]').click();
        await page.waitForFunction(() => document.querySelector('[data-node-id="schedule"]')?.classList.contains('fg-collapsed'));
        assert.equal(await node.locator('[data-param]').count(), 0);

        await node.locator('.fg-node-title').dblclick();
        await node.locator('.fg-node-rename').fill('Blend until t=20');
        await node.locator('.fg-node-rename').press('Enter');
        await page.waitForFunction(() => document.querySelector('[data-node-id="schedule"] .fg-node-title')?.textContent === 'Blend until t=20');

        await node.locator('.fg-node-title').click({ button: 'right' });
        await page.locator('[data-testid=context-menu] [data-key="colour"]').click();
        await page.locator('[data-testid=context-menu] [data-key="colour-green"]').click();
        await screenshot(page, `node-modes-${v.width}`);

        const g = await exportGraph(page);
        assert.deepStrictEqual(
          { mode: g.nodes.schedule?.mode, ui: { ...g.nodes.schedule?.ui, x: 0, y: 0 } },
          { mode: 'bypass', ui: { x: 0, y: 0, title: 'Blend until t=20', color: '#2e5e34', collapsed: true } },
        );
        // One undo per edit, newest first: the colour goes first.
        await page.keyboard.press('Control+z');
        assert.equal((await exportGraph(page)).nodes.schedule?.ui?.color, undefined);
      });

      it('frames a selection in a group that moves its nodes, and keeps a note, over a reload', async () => {
        await openTemplate(page, 'demo-fusion');
        await waitGraph(page, /Demo/);
        await page.locator('[data-node-id="base_model"] .fg-node-title').waitFor();
        await page.locator('[data-node-id="base_model"] .fg-node-title').click();
        await page.locator('[data-node-id="other_model"] .fg-node-title').click({ modifiers: ['Control'] });
        await page.keyboard.press('Control+g');
        const group = page.locator('.fg-group');
        await group.waitFor();
        // The frame's title bar sits above the nodes, outside the view the graph opened with: fit to see it.
        await page.keyboard.press('f');
        await page.waitForFunction(() => {
          const t = document.querySelector('.fg-group-title')!.getBoundingClientRect();
          const c = document.querySelector('[data-testid=canvas]')!.getBoundingClientRect();
          return t.y > c.y && t.x > c.x;
        });
        const frame = await group.boundingBox();
        const member = await rect(page, '[data-node-id="base_model"]');
        assert.ok(frame && inside(member, frame), 'the frame surrounds its nodes');

        const title = await rect(page, '.fg-group-title');
        const k = await canvasZoom(page);
        await page.mouse.move(title.x + title.width / 2, title.y + title.height / 2);
        await page.mouse.down();
        await page.mouse.move(title.x + title.width / 2 + 60, title.y + title.height / 2 + 40, { steps: 6 });
        await page.mouse.up();
        await page.waitForFunction(([x, y]) => {
          const r = document.querySelector('[data-node-id="base_model"]')!.getBoundingClientRect();
          return Math.abs(r.x - (x as number)) < 2 && Math.abs(r.y - (y as number)) < 2;
        }, [member.x + 60, member.y + 40]);

        const p = await emptyPoint(page);
        await page.mouse.click(p.x, p.y, { button: 'right' });
        await page.locator('[data-testid=context-menu] [data-key="add-note"]').click();
        await page.locator('.fg-note textarea').fill('SNB while t > 20, then the general model');
        await screenshot(page, `group-and-note-${v.width}`);

        const g = await exportGraph(page);
        assert.deepStrictEqual(Object.values(g.groups ?? {}).map((x) => [...x.nodes].sort()), [['base_model', 'other_model']]);
        assert.deepStrictEqual(Object.values(g.notes ?? {}).map((n) => n.text), ['SNB while t > 20, then the general model']);
        assert.ok(Math.abs((g.nodes.base_model?.ui?.x ?? 0) - 60 / k) < 3, 'the group moved its node');

        await page.waitForFunction(() => (localStorage.getItem('fusegraph.graph') ?? '').includes('SNB while t > 20'));
        await page.reload();
        await page.waitForSelector('.fg-group');
        assert.equal(await page.locator('.fg-note textarea').inputValue(), 'SNB while t > 20, then the general model');
      });

      it('shows the fusion schedule as a timeline on the switch and the samplers, and dragging the split edits t', async () => {
        // The same template may be open already: wait for this open's fit, so the views read below are the new ones.
        const fits = await page.getAttribute('[data-testid=canvas]', 'data-fits');
        await openTemplate(page, 'demo-fusion');
        await waitGraph(page, /Demo/);
        await page.waitForFunction((n) => document.querySelector('[data-testid=canvas]')?.getAttribute('data-fits') !== n, fits);
        const spans = (node: string) => page.locator(`[data-node-id="${node}"] [data-testid=timeline-span]`).evaluateAll((els) =>
          els.map((e) => [e.getAttribute('data-label'), Number(e.getAttribute('data-from')), Number(e.getAttribute('data-to'))]));
        // Demo graph: SNB while t > 20, then the general model alone.
        const fused = [['blend', 1000, 20], ['general', 20, 0]];
        // Every node view renders its timeline on its own schedule: wait until all four have drawn theirs.
        await page.waitForFunction((counts) => Object.entries(counts).every(([id, n]) =>
          document.querySelectorAll(`[data-node-id="${id}"] [data-testid=timeline-span]`).length === n),
        { schedule: 2, sample_fused: 2, sample_base: 1, sample_other: 1 });
        assert.deepStrictEqual(await spans('schedule'), fused);
        assert.deepStrictEqual(await spans('sample_fused'), fused);
        assert.deepStrictEqual(await spans('sample_base'), [['general', 1000, 0]]);
        assert.deepStrictEqual(await spans('sample_other'), [['cartoon', 1000, 0]]);

        await panTo(page, '[data-node-id="schedule"]');
        const bar = await rect(page, '[data-node-id="schedule"] .fg-timeline-bar');
        const handle = await rect(page, '[data-node-id="schedule"] [data-testid=timeline-split]');
        await page.mouse.move(handle.x + handle.width / 2, handle.y + handle.height / 2);
        await page.mouse.down();
        await page.mouse.move(bar.x + bar.width * 0.4, handle.y + handle.height / 2, { steps: 5 });
        await page.mouse.up();
        const t = (await exportGraph(page)).nodes.schedule?.params?.t as number;
        // 40 % along 1000 → 0 is t = 600, give or take one step of the handle.
        assert.ok(Math.abs(t - 600) <= 10, `t = ${t}`);
        assert.deepStrictEqual(await spans('sample_fused'), [['blend', 1000, t], ['general', t, 0]]);
        assert.equal(await page.locator('[data-node-id="schedule"] [data-param="t"] input').inputValue(), String(t));
        await page.locator('[data-node-id="schedule"]').screenshot({ path: `${SHOTS}/timeline-switch-${v.width}.png` });
      });
    });
  }

  it('logged no console errors', () => {
    assert.deepStrictEqual(h.consoleErrors, []);
  });
});
