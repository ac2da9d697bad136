/** `npm run bench`: CPU benchmarks on tiny generated models. Prints one line per figure. */
import { benchDemoGraph } from './demo-graph.js';
import { benchSamplingOverhead } from './sampling-overhead.js';
import { benchServerOverhead } from './server-overhead.js';

const sampling = await benchSamplingOverhead();
console.log(`txt2img ${sampling.steps} steps, CFG batch 2, 64×64 latent (tiny UNet F=64):`);
console.log(`  raw onnxruntime-node loop : ${sampling.rawMsPerCall.toFixed(2)} ms per UNet call`);
console.log(`  FuseGraph executor        : ${sampling.executorMsPerCall.toFixed(2)} ms per UNet call`);
console.log(`  executor overhead         : ${sampling.overheadPct.toFixed(1)} % (target < 3 %; medians of 9 interleaved rounds)`);
console.log(
  `  call path alone           : +${sampling.callPathMs.toFixed(2)} ms per UNet call, ${((100 * sampling.callPathMs) / sampling.rawMsPerCall).toFixed(1)} % ` +
    '(worker hop and copies; median of 150 interleaved call pairs)',
);

const server = await benchServerOverhead();
console.log('small txt2img run, median of 5:');
console.log(`  executeGraph (CLI path)   : ${server.cliMs.toFixed(1)} ms`);
console.log(`  POST /api/runs → WS done  : ${server.serverMs.toFixed(1)} ms (overhead ${(server.serverMs - server.cliMs).toFixed(1)} ms per run)`);

const demo = await benchDemoGraph();
console.log(`graphs/demo-fusion.json, three images, 50 steps, models loaded: ${(demo.ms / 1000).toFixed(2)} s (${demo.unetCalls} UNet calls)`);
