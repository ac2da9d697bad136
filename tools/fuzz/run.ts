/**
 * `npm run fuzz`: the long property-based run against a real server (default 10,000 cases each of graphs,
 * WebSocket frames and file names, a tenth as many of deeply nested JSON; `--cases N`, `--seed S`). Prints the counts by status code (frames: by reply
 * type) and exits non-zero on any 5xx, crash, unanswered frame or issue that names neither node nor field.
 */
import { fuzzDeepJson, fuzzFrames, fuzzGraphs, fuzzNames, type Tally } from './cases.js';
import { FUZZ_MODEL, fuzzServer } from './server.js';

const arg = (name: string): number | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : undefined;
};
const cases = arg('cases') ?? 10_000;
const seed = arg('seed') ?? Date.now() % 2 ** 31;

let serverBugs = 0;
const { server, remove } = await fuzzServer((message, err) => {
  if (message === 'request failed' || message.includes('outside any node') || err !== undefined) serverBugs++;
});
let failed = 0;
const report = (what: string, t: Tally, ms: number): void => {
  const counts = Object.entries(t.byStatus).sort().map(([k, v]) => `${k}: ${v}`).join(', ');
  console.log(`${what}: ${counts} (${(ms / 1000).toFixed(1)} s)`);
  for (const f of t.failures.slice(0, 10)) console.log(`  FAIL ${f}`);
  if (t.failures.length > 10) console.log(`  … ${t.failures.length - 10} more failures`);
  failed += t.failures.length;
};
console.log(`fuzzing ${server.url}: ${cases} cases each, seed ${seed}`);
try {
  for (const [what, run] of [
    ['graphs', () => fuzzGraphs(server.url, cases, FUZZ_MODEL, seed)],
    ['frames', () => fuzzFrames(server.url, cases, seed)],
    ['names', () => fuzzNames(server.url, cases, seed)],
    // Each case sends up to 600 kB; a tenth of the cases is enough to cover the depths and the three ways in.
    ['deep JSON', () => fuzzDeepJson(server.url, Math.max(1, Math.ceil(cases / 10)), seed)],
  ] as const) {
    const t0 = performance.now();
    report(what, await run(), performance.now() - t0);
  }
  const alive = await fetch(`${server.url}/api/queue`);
  console.log(`server alive afterwards: ${alive.status === 200}; server-bug log lines: ${serverBugs}`);
  if (alive.status !== 200) failed++;
  failed += serverBugs;
} finally {
  await remove();
}
console.log(failed ? `${failed} failure(s)` : '0 crashes, 0 5xx, 0 unnamed errors');
process.exitCode = failed ? 1 : 0;
