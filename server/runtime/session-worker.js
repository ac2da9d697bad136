// @ts-check
/**
 * Session worker: owns the ONNX Runtime sessions of one model folder, in a child process of its own or a worker
 * thread (session-channel.ts says which and why). session.run() blocks its thread while it computes, so each model
 * gets its own worker: the server's event loop stays responsive and two models' UNet calls can run at the same time
 * (worker threads on WebGPU take turns: see `exclusive`). Plain JavaScript (type-checked through JSDoc) so a worker
 * starts without the TypeScript loader, which would add about 0.4 s to every model load.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { parentPort, threadId, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { watchParent } from './parent-watchdog.js';
import { UPLOAD_SESSION_OPTIONS, sessionOptions } from './session-options.js';

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
/**
 * A tensor kept across calls (see KeptFeed in wire.ts). On WebGPU it lives in GPU memory, which is released when the
 * main thread drops it and no call still uses it.
 * @typedef {{ tensor: Promise<ort.Tensor>; users: number; dropped: boolean }} Kept
 */
/** @type {Map<string, Kept>} */
const kept = new Map();
/**
 * Identity sessions whose output stays in GPU memory, per element type: running one copies a kept tensor to the GPU
 * once. Only on WebGPU: onnxruntime-node binds outputs to device memory for WebGPU alone (not for CUDA).
 * @type {Map<string, ort.InferenceSession>}
 */
const uploaders = new Map();

/** @param {readonly ort.InferenceSession.ValueMetadata[]} list */
function meta(list) {
  return list.map((m) => ({ name: m.name, type: m.isTensor ? m.type : 'non-tensor', shape: m.isTensor ? [...m.shape] : [] }));
}

/**
 * @param {Readonly<Record<string, string>>} parts
 * @param {readonly Provider[]} providers
 * @param {number} threads
 * @param {Partial<Record<string, Uint8Array>>} uploads
 * @returns {Promise<OpenResult>}
 */
async function open(parts, providers, threads, uploads) {
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
    if (onWebGpu) await openUploaders(uploads);
    return { provider, parts: result, fallbacks, keepsOnDevice: uploaders.size > 0 };
  }
  throw new Error('no execution provider to try');
}

/**
 * Without them (or if one fails to open) kept tensors stay in host memory and are copied to the GPU on every call.
 * @param {Partial<Record<string, Uint8Array>>} uploads
 */
async function openUploaders(uploads) {
  try {
    await exclusive(true, async () => {
      for (const [type, model] of Object.entries(uploads)) {
        if (model) uploaders.set(type, await ort.InferenceSession.create(model, UPLOAD_SESSION_OPTIONS));
      }
    });
  } catch {
    await releaseUploaders();
  }
}

async function releaseUploaders() {
  await exclusive(true, async () => {
    for (const s of uploaders.values()) await s.release();
  });
  uploaders.clear();
}

/**
 * Where a kept tensor lives: in GPU memory when an uploader for its type is open (and the upload works), else
 * where it is. Never rejects, so a kept tensor always has a value to feed.
 * @param {ort.Tensor} host
 * @returns {Promise<ort.Tensor>}
 */
async function place(host) {
  const uploader = uploaders.get(host.type);
  if (!uploader) return host;
  try {
    const out = await exclusive(true, () => uploader.run({ host }));
    return /** @type {ort.Tensor} */ (out.device);
  } catch {
    return host;
  }
}

/** @param {Kept} k */
function dispose(k) {
  void k.tensor.then((t) => (t.location === 'gpu-buffer' ? exclusive(true, async () => t.dispose()) : undefined));
}

/** @param {Kept} k */
function release(k) {
  if (--k.users === 0 && k.dropped) dispose(k);
}

/** @param {string} key */
function drop(key) {
  const k = kept.get(key);
  if (!k) return;
  kept.delete(key);
  k.dropped = true;
  if (k.users === 0) dispose(k);
}

/**
 * Kept tensors are stored before the first await, so a later message that refers to them always finds them; the
 * caller releases each entry it got in `using` once its run is over.
 * @param {Feed} feed
 * @param {Kept[]} using
 * @returns {ort.Tensor | Promise<ort.Tensor>}
 */
function resolveFeed(feed, using) {
  if (!('ref' in feed)) return new ort.Tensor(feed.type, feed.data, feed.dims);
  for (const key of feed.drop ?? []) drop(key);
  if (feed.tensor) kept.set(feed.ref, { tensor: place(new ort.Tensor(feed.tensor.type, feed.tensor.data, feed.tensor.dims)), users: 0, dropped: false });
  const k = kept.get(feed.ref);
  if (!k) throw new Error(`kept tensor "${feed.ref}" is unknown to the worker`);
  k.users++;
  using.push(k);
  return k.tensor;
}

/**
 * @param {string} part
 * @param {Readonly<Record<string, Feed>>} feeds
 * @param {readonly string[]} fetch
 */
async function run(part, feeds, fetch) {
  const session = sessions.get(part);
  if (!session) throw new Error(`no session for part "${part}"`);
  /** @type {Kept[]} */
  const using = [];
  try {
    const resolved = Object.entries(feeds).map(([name, feed]) => /** @type {const} */ ([name, resolveFeed(feed, using)]));
    /** @type {Record<string, ort.Tensor>} */
    const ortFeeds = {};
    for (const [name, tensor] of resolved) ortFeeds[name] = await tensor;
    const out = await exclusive(onWebGpu, () => session.run(ortFeeds, fetch));
    /** @type {Record<string, WireTensor>} */
    const result = {};
    for (const name of fetch) {
      const t = out[name];
      if (!t) throw new Error(`output "${name}" missing from ${part}`);
      result[name] = { type: /** @type {WireTensor['type']} */ (t.type), dims: [...t.dims], data: /** @type {WireTensor['data']} */ (t.data) };
    }
    return { result, transfer: outputBuffers(result) };
  } finally {
    for (const k of using) release(k);
  }
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
      return { result: await open(req.parts, req.providers, req.threads, req.uploads ?? {}), transfer: [] };
    case 'run':
      return run(req.part, req.feeds, req.fetch);
    case 'close': {
      // GPU-resident tensors go before the uploader sessions whose allocator holds their memory.
      const onDevice = await Promise.all([...kept.values()].map((k) => k.tensor));
      kept.clear();
      await exclusive(onWebGpu, async () => {
        for (const t of onDevice) if (t.location === 'gpu-buffer') t.dispose();
        for (const s of sessions.values()) await s.release();
      });
      sessions.clear();
      await releaseUploaders();
      return { result: null, transfer: [] };
    }
  }
}

/**
 * The way back to SessionHost: the thread's port, or in a session process (session-channel.ts) its IPC channel,
 * where tensors are copied (structured clone through a pipe) rather than moved.
 * @type {{ on(event: 'message', fn: (req: WorkerRequest) => void): unknown; postMessage(res: WorkerResponse, transfer: ArrayBuffer[]): void; close(): void }}
 */
const port = parentPort ?? processPort();

function processPort() {
  const send = process.send?.bind(process);
  if (!send) throw new Error('session-worker must run in a worker thread or a forked process');
  // The server is gone (even kill -9): nothing is left to answer, and the sessions must not outlive it. The private
  // temporary folder the server made for this process (private-tmp.ts) goes too, as the server cannot remove it now.
  process.on('disconnect', () => {
    const tmp = process.env.FUSEGRAPH_PRIVATE_TMPDIR;
    try {
      if (tmp && tmp === process.env.TMPDIR) rmSync(tmp, { recursive: true, force: true });
    } catch {
      // a leftover folder is harmless
    }
    process.exit(0);
  });
  // The handler above runs only between calls: inside a long session.run() the main thread hears nothing, so a
  // watchdog thread kills the process once its server is gone (parent-watchdog.js).
  watchParent();
  // Under memory pressure the system's OOM killer should end this process, never the server it serves.
  try {
    writeFileSync('/proc/self/oom_score_adj', '1000');
  } catch {
    // not Linux, or not allowed: the killer then picks by size alone, which usually is this process anyway
  }
  return {
    /** @param {'message'} event @param {(req: WorkerRequest) => void} fn */
    on: (event, fn) => process.on(event, fn),
    /** @param {WorkerResponse} res */
    postMessage: (res) => {
      for (const message of inSlices(res)) send(message, undefined, undefined, () => undefined);
    },
    // The server kills a session process once it has closed its sessions (session-channel.ts).
    close: () => undefined,
  };
}

/**
 * Outputs larger than this leave a session process in slices of this size. The server's side of the pipe (Node's
 * IPC) allocates each message whole, and a failed allocation there is an uncaught error that ends the server; with
 * slices, the one large allocation is the server's own, which fails as a catchable out-of-memory (session-channel.ts).
 */
const SLICE_BYTES = 1 << 20;

/**
 * The messages that carry `res` through a process's IPC channel: its large outputs as OutputSlices (copies of their
 * part, since a view would carry its whole buffer), then the answer with those outputs as SlicedTensors.
 * @param {WorkerResponse} res
 * @returns {Generator<WorkerResponse | import('./wire.js').OutputSlice>}
 */
function* inSlices(res) {
  if (!res.ok || res.result === null || typeof res.result !== 'object') return yield res;
  const result = /** @type {Record<string, unknown>} */ ({ ...res.result });
  let sliced = false;
  for (const [name, value] of Object.entries(result)) {
    const t = /** @type {Partial<WireTensor>} */ (value);
    if (!ArrayBuffer.isView(t?.data) || t.data.byteLength <= SLICE_BYTES) continue;
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    for (let at = 0; at < bytes.byteLength; at += SLICE_BYTES) {
      yield { id: res.id, slice: name, at, total: bytes.byteLength, bytes: bytes.slice(at, at + SLICE_BYTES) };
    }
    result[name] = { type: t.type, dims: t.dims, sliced: bytes.byteLength };
    sliced = true;
  }
  yield sliced ? { ...res, result } : res;
}

/**
 * Sends a failure as the answer to `id`.
 * @param {number} id
 * @param {Error & { file?: string }} err
 */
function fail(id, err) {
  port.postMessage(/** @type {WorkerResponse} */ ({ id, ok: false, error: err.message ?? String(err), ...(err.file ? { file: err.file } : {}) }), []);
}

port.on('message', (/** @type {WorkerRequest} */ req) => {
  handle(req).then(
    ({ result, transfer }) => {
      const res = /** @type {WorkerResponse} */ ({ id: req.id, ok: true, result });
      try {
        port.postMessage(res, transfer);
      } catch {
        try {
          // A buffer that cannot be detached (memory the native side owns) is copied instead.
          port.postMessage(res, []);
        } catch (err) {
          // The answer could not be serialised (a session process out of memory: "Data cannot be cloned").
          fail(req.id, /** @type {Error} */ (err));
        }
      }
      // Sessions closed: a worker thread ends on its own once its port is closed. Terminated from outside instead, it
      // could be stopped inside a native finalizer, which aborts the whole process ("terminate called after throwing
      // an instance of 'Napi::Error'").
      if (req.op === 'close') port.close();
    },
    (/** @type {Error & { file?: string }} */ err) => fail(req.id, err),
  );
});
