import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fuzzDeepJson, fuzzFrames, fuzzGraphs, fuzzNames } from '../../tools/fuzz/cases.js';
import { FUZZ_MODEL, fuzzServer } from '../../tools/fuzz/server.js';

/** The bounded version of `npm run fuzz` (which runs ≥ 10,000 cases each): a fixed seed, a few seconds. */
describe('property-based attacks on a running server (issue 14)', () => {
  let fuzz: Awaited<ReturnType<typeof fuzzServer>>;
  const bugs: string[] = [];
  before(async () => {
    fuzz = await fuzzServer((message, err) => {
      if (err !== undefined) bugs.push(`${message}: ${String(err)}`);
    });
  });
  after(async () => {
    await fuzz?.remove();
  });

  it('mutated bundled graphs: 202 or a 4xx whose every issue names node or field, never a 5xx', async () => {
    const t = await fuzzGraphs(fuzz.server.url, 400, FUZZ_MODEL, 14);
    assert.deepEqual(t.failures, []);
    assert.ok((t.byStatus['400'] ?? 0) > 100 && (t.byStatus['202'] ?? 0) > 10, JSON.stringify(t.byStatus));
  });

  it('random WebSocket frames: each answered, the server stays up', async () => {
    const t = await fuzzFrames(fuzz.server.url, 400, 14);
    assert.deepEqual(t.failures, []);
    assert.ok((t.byStatus.error ?? 0) > 100, JSON.stringify(t.byStatus));
  });

  it('deeply nested JSON as a body, a PNG chunk and a frame: refused naming the depth limit, the server answering alongside (issue 27)', async () => {
    const t = await fuzzDeepJson(fuzz.server.url, 60, 27);
    assert.deepEqual(t.failures, []);
    for (const where of ['body 400 json_too_deep', 'png 400 json_too_deep', 'frame error']) assert.ok((t.byStatus[where] ?? 0) > 5, JSON.stringify(t.byStatus));
  });

  it('random file names: 400 or 404, never a 5xx or a file outside the roots', async () => {
    const t = await fuzzNames(fuzz.server.url, 300, 14);
    assert.deepEqual(t.failures, []);
    assert.equal((await fetch(`${fuzz.server.url}/api/queue`)).status, 200);
    assert.deepEqual(bugs, [], 'no server bug was logged');
  });
});
