// Usage: node --import tsx tools/bench-gpu/run.ts --models DIR --provider cuda|webgpu|cpu [--torch-result FILE] [options]
//        npm run bench:gpu -- --models DIR --provider cuda ...   (where npm exists; the device machine has only node)
//
// The GPU benchmark of issue 8 (method and figures: docs/performance.md; device call sequence:
// tools/bench-gpu/device-sequence.md). The work is in bench.ts.

import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { writeFile } from 'node:fs/promises';
import type { Provider } from '../../server/runtime/wire.js';
import { formatReport, runBench } from './bench.js';

const USAGE = `usage: node --import tsx tools/bench-gpu/run.ts --models DIR --provider cuda|webgpu|cpu [options]

Runs graphs/magicfusion-cross-domain.json on DIR/general (base) and DIR/expert (other) --runs times with the same
loaded sessions and reports the last run next to the PyTorch reference.

  --models DIR          folder with general/ and expert/ (tools/bench-gpu/make_models.py)
  --provider P          cuda | webgpu | cpu
  --torch-result FILE   reference.json of tools/bench-gpu/reference_sampler.py (same --steps and --size)
  --graph FILE          default graphs/magicfusion-cross-domain.json
  --steps N             DDIM steps of the three samplers (default 100)
  --size N              image width = height (default 512: a 64×64 latent)
  --runs N              runs with the same loaded sessions; the last is reported (default 2)
  --out DIR             images, latents and fusegraph.json of the reported run (default a temp folder)
  --json FILE           also write the report here
  --threads N           intra-op threads per session (default: all cores)
  --raw-calls N         then time N UNet calls straight on onnxruntime-node, no executor or worker (default 20; 0 = off);
                        with webgpu also with preferredLayout NHWC
  --serial-check        one more run with the UNet calls serialised: what overlapping the two models' calls gains
  --label TEXT          name of the FuseGraph column (default "FuseGraph <provider>")
  --set NODE.PARAM=V    override a graph parameter after the bench settings (repeatable), e.g. schedule.t=900`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      models: { type: 'string' },
      provider: { type: 'string' },
      'torch-result': { type: 'string' },
      graph: { type: 'string' },
      steps: { type: 'string', default: '100' },
      size: { type: 'string', default: '512' },
      runs: { type: 'string', default: '2' },
      out: { type: 'string' },
      json: { type: 'string' },
      threads: { type: 'string' },
      'raw-calls': { type: 'string', default: '20' },
      'serial-check': { type: 'boolean', default: false },
      label: { type: 'string' },
      set: { type: 'string', multiple: true, default: [] },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const provider = values.provider as Provider | undefined;
  if (!values.models || !provider || !['cuda', 'webgpu', 'cpu'].includes(provider)) {
    console.error(USAGE);
    return 2;
  }
  const int = (name: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got ${v}`);
    return n;
  };
  const size = int('size', values.size, 16);
  if (size % 8 !== 0) throw new Error(`--size must be a multiple of 8, got ${size}`);
  const report = await runBench({
    models: values.models,
    provider,
    graphFile: values.graph,
    steps: int('steps', values.steps, 1),
    size,
    runs: int('runs', values.runs, 1),
    out: values.out ?? path.join(os.tmpdir(), `fusegraph-bench-gpu-${provider}`),
    threads: values.threads ? int('threads', values.threads, 1) : os.availableParallelism(),
    rawCalls: int('raw-calls', values['raw-calls'], 0),
    serialCheck: values['serial-check'] ?? false,
    torchResult: values['torch-result'],
    label: values.label,
    sets: values.set ?? [],
  });
  console.log('');
  for (const line of formatReport(report)) console.log(line);
  if (values.json) await writeFile(values.json, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`report: ${path.join(path.resolve(values.out ?? path.join(os.tmpdir(), `fusegraph-bench-gpu-${provider}`)), 'fusegraph.json')}`);
  return 0;
}

process.exitCode = await main();
