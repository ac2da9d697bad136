/** `npm run bench`: CPU benchmarks on tiny generated models. Prints one line per figure. */
import { benchSamplingOverhead } from './sampling-overhead.js';

const sampling = await benchSamplingOverhead();
console.log(`txt2img ${sampling.steps} steps, CFG batch 2, 64×64 latent (tiny UNet F=64):`);
console.log(`  raw onnxruntime-node loop : ${sampling.rawMsPerCall.toFixed(2)} ms per UNet call`);
console.log(`  FuseGraph executor        : ${sampling.executorMsPerCall.toFixed(2)} ms per UNet call`);
console.log(`  executor overhead         : ${sampling.overheadPct.toFixed(1)} % (target < 3 %)`);
