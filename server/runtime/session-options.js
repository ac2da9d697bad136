// @ts-check
/**
 * The ONNX Runtime session options FuseGraph uses, in one place: the session worker creates its sessions with
 * them and the benchmarks compare against raw loops built with the very same options.
 * @param {import('./wire.js').Provider | import('onnxruntime-node').InferenceSession.ExecutionProviderConfig} provider
 *   a provider name, or a provider with options (the benchmarks' WebGPU variants)
 * @param {number} threads
 * @returns {import('onnxruntime-node').InferenceSession.SessionOptions}
 */
export function sessionOptions(provider, threads) {
  return {
    executionProviders: [provider],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: threads,
    executionMode: 'sequential',
    // Spinning pool threads would compete with the main thread (sampler math, I/O) between UNet calls.
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
}

/**
 * The WebGPU session of a one-node upload model (upload-model.ts): its output stays in GPU memory, so running it
 * turns host data into a GPU-resident tensor.
 * @type {import('onnxruntime-node').InferenceSession.SessionOptions}
 */
export const UPLOAD_SESSION_OPTIONS = { executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer' };
