import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import type { QueueState, RunDetail } from '../../nodes/protocol.js';
import type { Harness } from './harness.js';
import { api, browserSuiteSkip, openTemplate, panTo, screenshot, setParam, SHOTS, startHarness, VIEWPORTS } from './harness.js';

const SUITE = 'editor queue (Chromium, real server with the step gate, tiny models)';
const SAMPLERS = ['sample_fused', 'sample_base', 'sample_other'];
/** The per-step nodes each sampler of graphs/demo-fusion.json evaluates inside its loop. */
const DEMO_FEEDS: Record<string, string[]> = {
  sample_fused: ['schedule', 'snb', 'eps_base', 'eps_other', 'saliency_base', 'saliency_other'],
  sample_base: ['eps_base'],
  sample_other: ['eps_other_alone'],
};

async function queueIds(page: Page): Promise<{ id: string; status: string }[]> {
  return page.locator('[data-testid=queue-item]').evaluateAll((els) =>
    els.map((e) => ({ id: e.getAttribute('data-run-id') ?? '', status: e.getAttribute('data-status') ?? '' })));
}

/** Waits until the toolbar shows run `id` in state `status`: the canvas follows that run. */
async function shown(page: Page, id: string, status: string): Promise<void> {
  await page.waitForFunction(([run, st]) => {
    const badge = document.querySelector('[data-testid=run-status]');
    return badge?.getAttribute('title') === run && badge.textContent === st;
  }, [id, status] as const);
}

describe(SUITE, { skip: browserSuiteSkip(SUITE) }, () => {
  let h: Harness;
  let page: Page;
  const runStatus = async (id: string) => ((await api(h.server, `/api/runs/${id}`)) as RunDetail).status;

  before(async () => {
    h = await startHarness({ testHooks: true });
    page = h.page;
    await page.goto(h.server.url);
    await page.waitForSelector('[data-node-id="sample_fused"]');
    for (const id of SAMPLERS) await setParam(page, id, 'steps', '4');
  });

  after(async () => {
    await h?.close();
  });

  it('Cancel stops the run the canvas shows, which is the running one; per-step nodes and a cancelled sampler say what happened (16.1, 16.7, 16.9)', async (t) => {
    await api(h.server, '/api/test/gate', { hold: true });
    // Whatever happens here, the next test needs runs to flow.
    t.after(async () => {
      await api(h.server, '/api/test/gate', { hold: false });
    });
    for (const seed of ['1', '2', '3']) {
      await setParam(page, 'noise', 'seed', seed);
      await page.click('[data-testid=run]');
    }
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=queue-item]').length === 3);
    await api(h.server, '/api/test/gate/wait', { waiting: 1 });
    await page.waitForSelector('[data-testid=queue-item][data-status=running]');
    const [run1, run2, run3] = (await queueIds(page)).map((r) => r.id) as [string, string, string];
    assert.deepStrictEqual((await queueIds(page)).map((r) => r.status), ['running', 'queued', 'queued']);

    // The canvas shows run 1, the one running, although run 3 was submitted last.
    await shown(page, run1, 'running');
    // The per-step nodes the running sampler evaluates say "per step", not "queued".
    const running = await page.locator('.fg-node[data-node-type=DDIMStep][data-state=running]').first().getAttribute('data-node-id');
    assert.ok(running && DEMO_FEEDS[running], `a demo sampler runs (${running})`);
    for (const id of DEMO_FEEDS[running]) {
      await page.locator(`[data-node-id="${id}"] [data-testid=node-state]`, { hasText: 'per step' }).waitFor();
    }
    assert.match((await page.locator(`[data-run-id="${run2}"] [data-testid=queue-elapsed]`).textContent()) ?? '', /^waiting \d+ s$/);
    for (const v of VIEWPORTS) {
      await page.setViewportSize(v);
      await screenshot(page, `queue-three-runs-${v.width}`);
    }
    await page.setViewportSize(VIEWPORTS[0]);

    // Cancel cancels run 1, not the last submitted one; run 2 starts and the canvas follows it.
    await page.click('[data-testid=cancel]');
    await shown(page, run2, 'running');
    assert.equal(await runStatus(run1), 'cancelled');
    assert.equal(await runStatus(run3), 'queued');
    assert.equal(await page.isEnabled('[data-testid=cancel]'), true);

    // The queue panel cancels any run: run 2 goes, run 3 runs and is shown.
    await page.click(`[data-run-id="${run2}"] [data-testid=queue-cancel]`);
    await shown(page, run3, 'running');
    assert.equal(await runStatus(run2), 'cancelled');

    // Let a few steps of run 3 through, then cancel it: the sampler keeps its partial bar, marked as stopped.
    const { passed } = (await api(h.server, '/api/test/gate')) as { passed: number };
    await api(h.server, '/api/test/gate', { release_steps: 2 });
    await api(h.server, '/api/test/gate/wait', { passed: passed + 2, waiting: 1 });
    // The queue card's bar fills as the steps pass (#28 item 2: its spans rendered 0 px wide whatever the progress).
    await page.waitForFunction((id) => Number(document.querySelector(`[data-run-id="${id}"] [role=progressbar]`)?.getAttribute('aria-valuenow')) >= 2, run3);
    const fill = await page.locator(`[data-run-id="${run3}"] .fg-progress-fill`).evaluate((e) => e.getBoundingClientRect().width);
    const bar = await page.locator(`[data-run-id="${run3}"] .fg-progress-bar`).evaluate((e) => e.getBoundingClientRect().width);
    assert.ok(bar > 0 && fill > 0 && fill < bar, `queue card bar ${bar} px, filled ${fill} px`);
    const sampler = page.locator('.fg-node[data-node-type=DDIMStep][data-state=running]').first();
    await sampler.locator('.fg-progress-text').waitFor();
    const samplerId = await sampler.getAttribute('data-node-id');
    // The schedule timeline's cursor stands at the t the sampler is at.
    await page.waitForFunction((id) => {
      const node = document.querySelector(`[data-node-id="${id}"]`);
      const cursor = node?.querySelector('[data-testid=timeline-cursor]')?.getAttribute('data-t');
      const t = /t = (\d+)/.exec(node?.querySelector('.fg-progress-text')?.textContent ?? '')?.[1];
      return cursor != null && t !== undefined && Math.round(Number(cursor)) === Number(t);
    }, samplerId);
    await page.click('[data-testid=cancel]');
    await shown(page, run3, 'cancelled');
    const stopped = page.locator(`[data-node-id="${samplerId}"]`);
    await page.waitForFunction((id) => document.querySelector(`[data-node-id="${id}"]`)?.getAttribute('data-state') === 'cancelled', samplerId);
    assert.match((await stopped.locator('.fg-progress-text').textContent()) ?? '', /stopped at step \d\/4/);
    assert.equal(await stopped.locator('[data-testid=node-state]').textContent(), 'cancelled');
    await panTo(page, `[data-node-id="${samplerId}"]`);
    await stopped.screenshot({ path: path.join(SHOTS, 'queue-cancelled-sampler.png') });

    // Opening another graph drops the finished run's badge and node states (16.8).
    await openTemplate(page, 'txt2img');
    await page.waitForFunction(() => /txt2img|Text to image/i.test(document.querySelector('.fg-graph-name')?.textContent ?? ''));
    assert.equal(await page.locator('[data-testid=run-status]').count(), 0);
    assert.equal(await page.locator('.fg-node[data-state=cancelled]').count(), 0);
  });

  it('shows a paused queue everywhere with a way out; queues at the front, moves to the front and clears (16.2)', async () => {
    // Paused from outside the editor (the flag survives restarts): the page learns it when it loads.
    await api(h.server, '/api/queue/pause', {});
    await page.reload();
    await page.waitForSelector('[data-testid=queue-paused]');
    await openTemplate(page, 'demo-fusion');
    await page.waitForSelector('[data-node-id="sample_fused"]');
    for (const id of SAMPLERS) await setParam(page, id, 'steps', '4');

    await page.keyboard.press('Control+Enter');
    await page.waitForFunction(() => document.querySelector('[data-testid=run-status]')?.textContent === 'queued');
    assert.equal(await page.isVisible('[data-testid=paused-hint]'), true);
    await screenshot(page, 'queue-paused-1280');

    await page.keyboard.press('Control+Enter');
    await page.keyboard.press('Control+Shift+Enter');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=queue-item]').length === 3);
    const queue = async () => ((await api(h.server, '/api/queue')) as QueueState).pending;
    const pending = await queue();
    const newest = pending.reduce((a, b) => (b.created_at > a.created_at ? b : a));
    // Ctrl+Shift+Enter put the last submitted run first; the panel lists the server's order.
    assert.equal(pending[0]?.id, newest.id);
    await page.waitForFunction((ids) => [...document.querySelectorAll('[data-testid=queue-item]')].map((e) => e.getAttribute('data-run-id')).join() === ids,
      pending.map((r) => r.id).join());

    // Picking a queued run shows it on the canvas (and the toolbar's Cancel would act on it); picking it again lets go.
    const picked = pending[1]!.id;
    await page.click(`[data-run-id="${picked}"] .fg-queue-main`);
    await shown(page, picked, 'queued');
    assert.equal(await page.textContent('[data-testid=run-position]'), '1 ahead');
    await page.click(`[data-run-id="${picked}"] .fg-queue-main`);

    const last = pending[2]!.id;
    await page.click(`[data-run-id="${last}"] [data-testid=queue-front]`);
    await page.waitForFunction((id) => document.querySelector('[data-testid=queue-item]')?.getAttribute('data-run-id') === id, last);
    assert.equal((await queue())[0]?.id, last);

    await page.click('[data-testid=queue-clear]');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=queue-item]').length === 0);
    assert.deepStrictEqual(await queue(), []);
    for (const r of pending) assert.equal(await runStatus(r.id), 'cancelled');

    // A run queued while paused starts when the toolbar's Resume is pressed, and finishes.
    await page.click('[data-testid=run]');
    await page.waitForFunction(() => document.querySelector('[data-testid=run-status]')?.textContent === 'queued');
    await page.click('[data-testid=resume]');
    await page.waitForFunction(() => document.querySelector('[data-testid=run-status]')?.textContent === 'done', null, { timeout: 60_000 });
    assert.equal(await page.locator('[data-testid=queue-paused]').count(), 0);
    assert.equal(((await api(h.server, '/api/queue')) as QueueState).paused, false);
    // After the run, every per-step node shows what it did: done, not a leftover "queued" or nothing.
    for (const id of Object.values(DEMO_FEEDS).flat()) {
      assert.equal(await page.locator(`[data-node-id="${id}"]`).getAttribute('data-state'), 'done', id);
    }
  });

  it('logged no console errors', () => {
    assert.deepStrictEqual(h.consoleErrors, []);
  });
});
