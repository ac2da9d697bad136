// @ts-check
/**
 * Child process that measures how much memory one UNet call takes at a given latent size (see
 * activation-profiler.ts, which starts it with process.execPath and reads its stdout). It loads the UNet alone on the
 * CPU provider, so nothing else of the server adds noise, and reads the process's resident-set high-water mark
 * (process.resourceUsage().maxRSS, which only grows) before and after calls of increasing size: the growth over the
 * level after a warm-up call at the smallest size is what the call held at its peak. Plain JavaScript, like
 * session-worker.js, so it starts without the TypeScript loader.
 *
 * The session has the server's options (session-options.js) on one thread, except that ONNX Runtime's CPU arena is
 * off: with it, memory freed after one call stays resident, so the next call's growth would not be its own peak.
 *
 * Input (argv[2], JSON): { unet, rows, channels, textLength, hidden, sampleType, timestepType, timestepRank,
 *   contextType, firstSide, fixedSide, stopBytes, maxSide }.
 * Output (stdout, JSON): { points: [{ side, pixels, bytes, ms }] }, in increasing size, for `rows` rows.
 */
import { rmSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { watchParent } from './parent-watchdog.js';
import { sessionOptions } from './session-options.js';

/**
 * @typedef {{ unet: string; rows: number; channels: number; textLength: number; hidden: number; sampleType: string;
 *   timestepType: string; timestepRank: number; contextType: string; firstSide: number; fixedSide: number | null;
 *   stopBytes: number; maxSide: number }} ProbeRequest
 */

/** @param {string} type @param {number} n @param {readonly number[]} dims */
function zeros(type, n, dims) {
  switch (type) {
    case 'float16':
      return new ort.Tensor('float16', new Uint16Array(n), dims);
    case 'int64':
      return new ort.Tensor('int64', new BigInt64Array(n).fill(1n), dims);
    case 'int32':
      return new ort.Tensor('int32', new Int32Array(n).fill(1), dims);
    default:
      return new ort.Tensor('float32', new Float32Array(n), dims);
  }
}

/** Bytes of the resident-set high-water mark (maxRSS is in KiB on Linux and macOS). */
const highWater = () => process.resourceUsage().maxRSS * 1024;

/** @param {ProbeRequest} req */
async function main(req) {
  const options = { ...sessionOptions('cpu', 1), enableCpuMemArena: false };
  const session = await ort.InferenceSession.create(req.unet, options);
  const context = zeros(req.contextType, req.rows * req.textLength * req.hidden, [req.rows, req.textLength, req.hidden]);
  /** @param {number} side */
  const call = async (side) => {
    const sample = zeros(req.sampleType, req.rows * req.channels * side * side, [req.rows, req.channels, side, side]);
    const timestep = req.timestepRank === 0 ? zeros(req.timestepType, 1, []) : zeros(req.timestepType, req.rows, [req.rows]);
    const out = await session.run({ sample, timestep, encoder_hidden_states: context });
    for (const t of Object.values(out)) t.dispose();
  };
  /** @type {{ side: number; pixels: number; bytes: number; ms: number }[]} */
  const points = [];
  const sides = [];
  if (req.fixedSide !== null) {
    sides.push(req.fixedSide); // an export traced at one size takes no other
  } else {
    for (let s = req.firstSide * 2; s <= req.maxSide; s *= 2) sides.push(s);
    // The warm-up pays for what any first call allocates (kernels' packed weights, thread-local buffers).
    await call(req.firstSide);
  }
  const base = highWater();
  for (const side of sides) {
    const t0 = performance.now();
    await call(side);
    const bytes = highWater() - base;
    points.push({ side, pixels: side * side, bytes, ms: performance.now() - t0 });
    // Two sizes well above the measurement's noise are enough to fit both terms.
    if (points.length >= 2 && (points.at(-2)?.bytes ?? 0) >= req.stopBytes) break;
  }
  await session.release();
  process.stdout.write(`${JSON.stringify({ points })}\n`);
}

// The parent holds our stdin open: when it ends (the server exited, even by SIGKILL), so does the probe, at the
// next call boundary, instead of measuring for nobody. Inside a call (seconds to minutes at a large size) the main
// thread hears nothing: the watchdog thread kills the probe then (parent-watchdog.js, issue 27).
process.stdin.on('end', () => process.exit(2));
watchParent();

// The private temporary folder the server made for this probe (private-tmp.ts) goes when the probe ends: the server
// removes it too once it hears of the end, but a server that is gone (the stdin case above) cannot.
process.on('exit', () => {
  const tmp = process.env.FUSEGRAPH_PRIVATE_TMPDIR;
  try {
    if (tmp && tmp === process.env.TMPDIR) rmSync(tmp, { recursive: true, force: true });
  } catch {
    // a leftover folder is harmless
  }
});
process.stdin.resume();

main(JSON.parse(process.argv[2] ?? '{}'))
  .catch((/** @type {Error} */ err) => {
    process.stderr.write(`${err.message ?? String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => process.stdin.destroy());
