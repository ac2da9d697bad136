import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { freemem } from 'node:os';
import { describe, it } from 'node:test';
import { defaultMaxRunMemory, resolveMaxRunMemory } from '../../server/execution/run-memory-budget.js';
import { parseNvidiaSmiMemory, queryGpuMemory } from '../../server/runtime/gpu-memory.js';

const MIB = 2 ** 20;

const hasNvidiaSmi = ((): boolean => {
  try {
    execFileSync('nvidia-smi', ['-L'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
})();

describe('nvidia-smi memory query', () => {
  // `--format=csv,noheader,nounits` prints "free, total" in MiB per GPU, comma and space separated; the H100 of
  // tools/bench-gpu/results/2026-11-26-h100/device-log.txt reported a total of 81559 MiB.
  it('reads one GPU', () => {
    assert.deepEqual(parseNvidiaSmiMemory('81080, 81559\n'), [{ freeBytes: 81080 * MIB, totalBytes: 81559 * MIB }]);
  });

  it('reads one line per GPU, in nvidia-smi\'s order (CRLF too, as on Windows)', () => {
    const gpus = parseNvidiaSmiMemory('23905, 24564\r\n11019, 12288\r\n');
    assert.deepEqual(gpus.map((g) => [g.freeBytes / MIB, g.totalBytes / MIB]), [[23905, 24564], [11019, 12288]]);
  });

  it('accepts the MiB unit of the form without nounits', () => {
    assert.deepEqual(parseNvidiaSmiMemory('80614 MiB, 81559 MiB'), [{ freeBytes: 80614 * MIB, totalBytes: 81559 * MIB }]);
  });

  it('refuses lines nvidia-smi could not fill, and empty output', () => {
    assert.throws(() => parseNvidiaSmiMemory('[N/A], [N/A]\n'), /unexpected nvidia-smi line "\[N\/A\], \[N\/A\]"/);
    assert.throws(() => parseNvidiaSmiMemory('[Insufficient Permissions], 81559\n'), /unexpected nvidia-smi line/);
    assert.throws(() => parseNvidiaSmiMemory('No devices were found\n'), /unexpected nvidia-smi line/);
    assert.throws(() => parseNvidiaSmiMemory('\n'), /listed no GPU/);
  });

  it('queries the real nvidia-smi where there is one', { skip: hasNvidiaSmi ? false : 'no nvidia-smi on this machine' }, () => {
    const gpu = queryGpuMemory();
    assert.ok(gpu.totalBytes > 0 && gpu.freeBytes <= gpu.totalBytes, JSON.stringify(gpu));
    const logs: string[] = [];
    assert.equal(defaultMaxRunMemory({ provider: 'cuda', log: (m) => logs.push(m) }) > 0, true);
    assert.deepEqual(logs, []);
  });
});

describe('the default --max-run-memory', () => {
  const nearHalfTheFreeRam = (bytes: number): void => {
    // Free RAM moves while the test runs (other processes): within 1 GiB of half of it now.
    assert.ok(Math.abs(bytes - freemem() / 2) < 2 ** 30, `${bytes} vs half of ${freemem()}`);
  };

  it('is half the free RAM on the CPU provider, without asking nvidia-smi or logging', () => {
    const logs: string[] = [];
    nearHalfTheFreeRam(defaultMaxRunMemory({ provider: 'cpu', log: (m) => logs.push(m), nvidiaSmi: '/nonexistent/nvidia-smi' }));
    assert.deepEqual(logs, []);
  });

  for (const [what, nvidiaSmi, why] of [
    ['is missing', '/nonexistent/nvidia-smi', /ENOENT/],
    ['fails', 'false', /Command failed/],
  ] as const) {
    it(`falls back to half the free RAM, with a log line, on CUDA when nvidia-smi ${what}`, () => {
      const logs: string[] = [];
      nearHalfTheFreeRam(defaultMaxRunMemory({ provider: 'cuda', log: (m) => logs.push(m), nvidiaSmi }));
      assert.equal(logs.length, 1);
      assert.match(logs[0]!, /the models run on cuda, but nvidia-smi could not report the GPU's free memory/);
      assert.match(logs[0]!, why);
      assert.match(logs[0]!, /half the free RAM instead, \d+(\.\d)? [KMG]iB$/);
    });
  }
});

describe('resolveMaxRunMemory (serve\'s and fusegraph run\'s --max-run-memory)', () => {
  const cpu = { provider: 'cpu', log: () => undefined, nvidiaSmi: '/nonexistent/nvidia-smi' } as const;

  it('takes a positive budget as given and defaults an absent one', () => {
    assert.equal(resolveMaxRunMemory(1000, cpu), 1000);
    assert.ok(Math.abs(resolveMaxRunMemory(undefined, cpu) - freemem() / 2) < 2 ** 30);
  });

  it('refuses zero, negative and non-finite budgets', () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => resolveMaxRunMemory(bad, cpu), /maxRunMemory must be a positive number of bytes/, String(bad));
    }
  });
});
