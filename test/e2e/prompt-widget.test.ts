/**
 * EncodePrompt's text area in the editor: the token count per chunk under it ("6/75", "75/75 · 25/75") follows the
 * typing, `embedding:` completes from the server's models/embeddings (keyboard and click; Escape closes), and with
 * the server gone the count just disappears.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Locator, Page } from 'playwright-core';
import { writeSafetensors } from '../../server/checkpoint/formats/safetensors-writer.js';
import type { Harness } from './harness.js';
import { api, browserSuiteSkip, exportGraph, openTemplate, panTo, screenshot, startHarness } from './harness.js';

const SUITE = 'prompt widget: token counts and embedding completion (Chromium, real server)';
const NODE = '[data-node-id="base_prompt"]';

describe(SUITE, { skip: browserSuiteSkip(SUITE) }, () => {
  let h: Harness;
  let page: Page;
  let area: Locator;
  let count: Locator;

  /** What the server counts for `text`, formatted as the widget shows it. */
  const expected = async (text: string) => {
    const { chunks } = (await api(h.server, '/api/prompt/tokens', { text })) as { chunks: number[] };
    return chunks.map((c) => `${c}/75`).join(' · ');
  };
  const countShows = (want: string) =>
    page.waitForFunction(([sel, w]) => document.querySelector(`${sel} [data-testid=token-count]`)?.textContent === w, [NODE, want] as const);
  const suggestions = () => page.locator(`${NODE} [data-testid=embedding-suggestions]`);

  before(async () => {
    h = await startHarness();
    page = h.page;
    const dir = path.join(h.ws.models, 'embeddings');
    await mkdir(path.join(dir, 'styles'), { recursive: true });
    await writeSafetensors(path.join(dir, 'tinystyle.safetensors'), [{ name: 'emb_params', dtype: 'F32', shape: [4, 16], data: new Float32Array(64) }]);
    await writeSafetensors(path.join(dir, 'styles', 'inkwash.safetensors'), [{ name: 'emb_params', dtype: 'F32', shape: [2, 16], data: new Float32Array(32) }]);
    await page.goto(h.server.url);
    await page.waitForSelector('.fg-node');
    await openTemplate(page, 'demo-fusion');
    await page.locator(NODE).waitFor();
    await panTo(page, NODE);
    area = page.locator(`${NODE} [data-param="text"] textarea`);
    count = page.locator(`${NODE} [data-testid=token-count]`);
  });
  after(async () => {
    await h?.close();
  });

  it('shows the tokens per chunk under the prompt and follows the typing, debounced', async () => {
    assert.equal(await area.inputValue(), 'a red star on the left');
    await countShows(await expected('a red star on the left'));
    assert.equal(await count.textContent(), '6/75');
    // Every EncodePrompt text area has its count.
    await page.waitForFunction(() => [...document.querySelectorAll('[data-node-type="EncodePrompt"] [data-testid=token-count]')].every((e) => /^\d+\/75$/.test(e.textContent ?? '')));

    const asked: string[] = [];
    page.on('request', (r) => {
      if (r.url().endsWith('/api/prompt/tokens')) asked.push(r.postData() ?? '');
    });
    await area.click();
    await page.keyboard.press('Control+End');
    const typed = ', with a golden crown on its head, photorealistic';
    await area.pressSequentially(typed);
    const text = `a red star on the left${typed}`;
    await countShows(await expected(text));
    assert.notEqual(await count.textContent(), '6/75');
    // A pause asks once: not a request per keystroke, and the last one asked for the final text.
    assert.ok(asked.length < typed.length / 2, `${asked.length} requests for ${typed.length} keystrokes`);
    assert.equal((JSON.parse(asked.at(-1)!) as { text: string }).text, text);

    await area.fill(Array.from({ length: 100 }, () => 'a').join(' '));
    await countShows('75/75 · 25/75');
    await area.fill('a red star on the left');
    await countShows('6/75');
  });

  it('completes embedding: with the keyboard, closes on Escape, and inserts a clicked name', async () => {
    await area.click();
    await page.keyboard.press('Control+End');
    await area.pressSequentially(' embedding:');
    await suggestions().waitFor();
    const names = await suggestions().locator('[role=option]').evaluateAll((els) => els.map((e) => e.getAttribute('data-embedding')));
    assert.deepEqual(names, ['styles/inkwash', 'tinystyle']);
    // Filtered by what follows the colon.
    await area.pressSequentially('ti');
    await page.waitForFunction((sel) => document.querySelectorAll(`${sel} [data-testid=embedding-suggestions] [role=option]`).length === 1, NODE);
    await area.press('Backspace');
    await area.press('Backspace');
    await page.waitForFunction((sel) => document.querySelectorAll(`${sel} [data-testid=embedding-suggestions] [role=option]`).length === 2, NODE);
    await area.press('ArrowDown');
    await suggestions().locator('[data-embedding="tinystyle"][aria-selected=true]').waitFor();
    // The list is on top of the node below it, not behind it.
    assert.ok(await suggestions().locator('[data-embedding="tinystyle"]').evaluate((el) => {
      const r = el.getBoundingClientRect();
      return el.contains(document.elementFromPoint(r.x + r.width / 2, r.bottom - 2));
    }), 'the last suggestion is visible');
    await screenshot(page, 'prompt-embedding-suggestions');
    await area.press('Enter');
    await suggestions().waitFor({ state: 'detached' });
    assert.equal(await area.inputValue(), 'a red star on the left embedding:tinystyle', 'Enter inserted the name, not a new line');
    // 6 words + the embedding's 4 vectors.
    await countShows('10/75');
    assert.equal(await page.locator(`${NODE}`).count(), 1, 'the keys stayed in the widget');

    await area.pressSequentially(' (embedding:');
    await suggestions().waitFor();
    await area.press('Escape');
    await suggestions().waitFor({ state: 'detached' });
    assert.equal(await area.inputValue(), 'a red star on the left embedding:tinystyle (embedding:');
    await area.pressSequentially('ink');
    await suggestions().locator('[data-embedding="styles/inkwash"]').click();
    await suggestions().waitFor({ state: 'detached' });
    assert.equal(await area.inputValue(), 'a red star on the left embedding:tinystyle (embedding:styles/inkwash');
    assert.ok(await area.evaluate((el) => el === document.activeElement), 'the text area keeps the focus');
    await area.pressSequentially(':1.2)');
    await countShows('12/75');

    // The edit is the graph's: the exported param holds it.
    const graph = await exportGraph(page);
    assert.equal(graph.nodes.base_prompt?.params?.text, 'a red star on the left embedding:tinystyle (embedding:styles/inkwash:1.2)');
    await screenshot(page, 'prompt-widget');
  });

  it('shows no count and no message when the server is gone', async () => {
    await h.server.close();
    await area.click();
    await area.pressSequentially(' star');
    await countShows('');
    assert.equal(await page.locator('.fg-toast', { hasText: /token|prompt/i }).count(), 0);
  });
});
