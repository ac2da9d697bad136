// @ts-check
/**
 * Worker thread that owns the ONNX Runtime sessions of one model folder. session.run() blocks its thread while it
 * computes, so each model gets its own thread: the server's event loop stays responsive and two models' UNet calls
 * can run at the same time (on WebGPU they take turns: see `exclusive`). Plain JavaScript (type-checked through
 * JSDoc) so a worker starts without the TypeScript loader, which would add about 0.4 s to every model load.
 */
import { parentPort, threadId, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { sessionOptions } from './session-options.js';

/** @typedef {import('./wire.js').WorkerRequest} WorkerRequest */
/** @typedef {import('./wire.js').WorkerResponse} WorkerResponse */
/** @typedef {import('./wire.js').WireTensor} WireTensor */
/** @typedef {import('./wire.js').Feed} Feed */
/** @typedef {import('./wire.js').Provider} Provider */
/** @typedef {import('./wire.js').PartMeta} PartMeta */
/** @typedef {import('./wire.js').OpenResult} OpenResult */

/** @type {Map<string, ort.InferenceSession>} */
const sessions = new Map();
/** Whether this worker's sessions run on WebGPU, so every call on them must hold the process-wide lock. */
let onWebGpu = false;

/**
 * The process-wide WebGPU lock (session-host.ts): 0 when free, else the holder's threadId. onnxruntime-node puts
 * every WebGPU session of a process on one WebGPU context (one Dawn device and command encoder), which is not
 * thread-safe: two workers creating, running or releasing WebGPU sessions at the same time crash the whole process.
 * @type {Int32Array | undefined}
 */
const gpuLock = workerData?.gpuLock;
/** Atomics.waitAsync (Node 16+; ES2024, newer than the project's TypeScript lib). */
const { waitAsync } = /** @type {{ waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: unknown } }} */ (
  /** @type {unknown} */ (Atomics)
);

/**
 * Runs `fn` holding the WebGPU lock when `needed`. Waits with Atomics.waitAsync, so a second request to this same
 * worker waits without blocking the thread that holds the lock.
 * @template T
 * @param {boolean} needed
 * @param {() => Promise<T>} fn
 * @returns {Promise<T>}
 */
async function exclusive(needed, fn) {
  if (!needed || !gpuLock) return fn();
  for (;;) {
    const holder = Atomics.compareExchange(gpuLock, 0, 0, threadId);
    if (holder === 0) break;
    const wait = waitAsync(gpuLock, 0, holder);
    if (wait.async) await wait.value;
  }
  try {
    return await fn();
  } finally {
    Atomics.store(gpuLock, 0, 0);
    Atomics.notify(gpuLock, 0);
  }
}
/** Tensors kept across calls (see KeptFeed in wire.ts). @type {Map<string, ort.Tensor>} */
const kept = new Map();

/** @param {readonly ort.InferenceSession.ValueMetadata[]} list */
function meta(list) {
  return list.map((m) => ({ name: m.name, type: m.isTensor ? m.type : 'non-tensor', shape: m.isTensor ? [...m.shape] : [] }));
}

/**
 * @param {Readonly<Record<string, string>>} parts
 * @param {readonly Provider[]} providers
 * @param {number} threads
 * @returns {Promise<OpenResult>}
 */
async function open(parts, providers, threads) {
  /** @type {{ provider: Provider; error: string }[]} */
  const fallbacks = [];
  for (const [i, provider] of providers.entries()) {
    /** @type {Map<string, ort.InferenceSession>} */
    const created = new Map();
    try {
      for (const [name, file] of Object.entries(parts)) {
        try {
          created.set(name, await exclusive(provider === 'webgpu', () => ort.InferenceSession.create(file, sessionOptions(provider, threads))));
        } catch (err) {
          throw Object.assign(new Error(`${file}: ${/** @type {Error} */ (err).message}`), { file });
        }
      }
    } catch (err) {
      await exclusive(provider === 'webgpu', async () => {
        for (const s of created.values()) await s.release();
      });
      // A broken file fails on every provider, so fall back only while a later provider is left to try.
      if (i === providers.length - 1) throw err;
      fallbacks.push({ provider, error: /** @type {Error} */ (err).message });
      continue;
    }
    onWebGpu = provider === 'webgpu';
    /** @type {Record<string, PartMeta>} */
    const result = {};
    for (const [name, s] of created) {
      sessions.set(name, s);
      result[name] = { inputs: meta(s.inputMetadata), outputs: meta(s.outputMetadata) };
    }
    return { provider, parts: result, fallbacks };
  }
  throw new Error('no execution provider to try');
}

/**
 * Kept tensors are stored before the first await, so a later message that refers to them always finds them.
 * @param {Feed} feed
 */
function resolveFeed(feed) {
  if (!('ref' in feed)) return new ort.Tensor(feed.type, feed.data, feed.dims);
  for (const key of feed.drop ?? []) kept.delete(key);
  if (feed.tensor) kept.set(feed.ref, new ort.Tensor(feed.tensor.type, feed.tensor.data, feed.tensor.dims));
  const t = kept.get(feed.ref);
  if (!t) throw new Error(`kept tensor "${feed.ref}" is unknown to the worker`);
  return t;
}

/**
 * @param {string} part
 * @param {Readonly<Record<string, Feed>>} feeds
 * @param {readonly string[]} fetch
 */
async function run(part, feeds, fetch) {
  const session = sessions.get(part);
  if (!session) throw new Error(`no session for part "${part}"`);
  /** @type {Record<string, ort.Tensor>} */
  const ortFeeds = {};
  for (const [name, feed] of Object.entries(feeds)) ortFeeds[name] = resolveFeed(feed);
  const out = await exclusive(onWebGpu, () => session.run(ortFeeds, fetch));
  /** @type {Record<string, WireTensor>} */
  const result = {};
  for (const name of fetch) {
    const t = out[name];
    if (!t) throw new Error(`output "${name}" missing from ${part}`);
    result[name] = { type: /** @type {WireTensor['type']} */ (t.type), dims: [...t.dims], data: /** @type {WireTensor['data']} */ (t.data) };
  }
  return { result, transfer: outputBuffers(result) };
}

/**
 * The buffers behind a run's outputs, to move to the main thread rather than copy: each run's outputs are fresh
 * arrays that the worker does not keep.
 * @param {Record<string, WireTensor>} result
 * @returns {ArrayBuffer[]}
 */
function outputBuffers(result) {
  /** @type {ArrayBuffer[]} */
  const buffers = [];
  for (const { data } of Object.values(result)) {
    if (data.buffer instanceof ArrayBuffer && !buffers.includes(data.buffer)) buffers.push(data.buffer);
  }
  return buffers;
}

/**
 * @param {WorkerRequest} req
 * @returns {Promise<{ result: unknown; transfer: ArrayBuffer[] }>}
 */
async function handle(req) {
  switch (req.op) {
    case 'open':
      return { result: await open(req.parts, req.providers, req.threads), transfer: [] };
    case 'run':
      return run(req.part, req.feeds, req.fetch);
    case 'close':
      await exclusive(onWebGpu, async () => {
        for (const s of sessions.values()) await s.release();
      });
      sessions.clear();
      kept.clear();
      return { result: null, transfer: [] };
  }
}

const port = parentPort;
if (!port) throw new Error('session-worker must run in a worker thread');
port.on('message', (/** @type {WorkerRequest} */ req) => {
  handle(req).then(
    ({ result, transfer }) => {
      const res = /** @type {WorkerResponse} */ ({ id: req.id, ok: true, result });
      try {
        port.postMessage(res, transfer);
      } catch {
        // A buffer that cannot be detached (memory the native side owns) is copied instead.
        port.postMessage(res);
      }
    },
    (/** @type {Error & { file?: string }} */ err) => {
      port.postMessage(/** @type {WorkerResponse} */ ({ id: req.id, ok: false, error: err.message ?? String(err), ...(err.file ? { file: err.file } : {}) }));
    },
  );
});
