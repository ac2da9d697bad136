/** `npm run bench`: CPU benchmarks on tiny generated models. Prints one line per figure. */
import { benchDemoGraph } from './demo-graph.js';
import { benchSamplingOverhead } from './sampling-overhead.js';
import { benchServerOverhead } from './server-overhead.js';

const signed = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;

const sampling = await benchSamplingOverhead();
console.log(`txt2img ${sampling.steps} steps, CFG batch 2, 64×64 latent (tiny UNet F=64):`);
console.log(`  raw onnxruntime-node loop, main thread : ${sampling.rawMsPerCall.toFixed(2)} ms per UNet call`);
console.log(`  same loop on FuseGraph's sessions      : ${sampling.sameSessionsMsPerCall.toFixed(2)} ms per UNet call (session process: ${signed(sampling.workerPct)} %)`);
console.log(`  FuseGraph executor                     : ${sampling.executorMsPerCall.toFixed(2)} ms per UNet call`);
console.log(`  executor overhead on the same sessions : ${signed(sampling.overheadPct)} % (target < 3 %; median of ${sampling.rounds} interleaved rounds' ratios)`);
console.log(
  `  host work per step, outside UNet calls : executor ${sampling.executorHostMs.toFixed(3)} ms, hand loop ${sampling.sameSessionsHostMs.toFixed(3)} ms: ` +
    `the executor adds ${signed((100 * (sampling.executorHostMs - sampling.sameSessionsHostMs)) / sampling.sameSessionsMsPerCall)} % of a step`,
);
console.log(
  `  call path alone                        : +${sampling.callPathMs.toFixed(2)} ms per UNet call, ${((100 * sampling.callPathMs) / sampling.rawMsPerCall).toFixed(1)} % ` +
    '(hop to the session process and copies; median of 150 interleaved call pairs)',
);
console.log(
  `  call path, sessions in a worker thread : +${sampling.threadCallPathMs.toFixed(2)} ms per UNet call ` +
    `(--session-isolation thread, interleaved with the above: the process costs ${signed(sampling.callPathMs - sampling.threadCallPathMs)} ms more)`,
);

const server = await benchServerOverhead();
console.log('small txt2img run, median of 5:');
console.log(`  executeGraph (CLI path)   : ${server.cliMs.toFixed(1)} ms`);
console.log(`  POST /api/runs → WS done  : ${server.serverMs.toFixed(1)} ms (overhead ${(server.serverMs - server.cliMs).toFixed(1)} ms per run)`);

const demo = await benchDemoGraph();
console.log(`graphs/demo-fusion.json, three images, 50 steps, models loaded: ${(demo.ms / 1000).toFixed(2)} s (${demo.unetCalls} UNet calls)`);
