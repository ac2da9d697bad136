/**
 * A small ONNX Runtime CPU session for host-side float32 arithmetic that is too large for plain JS (the LoRA merge's
 * matrix products), run in the calling thread: the callers are builds, which already run off the request path.
 * It keeps ONNX Runtime behind runtime/ for code that only needs numbers in and out.
 */
import * as ort from 'onnxruntime-node';

export interface Float32Feed {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}

export class CpuComputeSession {
  private constructor(private readonly session: ort.InferenceSession) {}

  /** `intraOpNumThreads` undefined: ONNX Runtime's default (all cores). */
  static async create(model: Uint8Array, intraOpNumThreads?: number): Promise<CpuComputeSession> {
    const session = await ort.InferenceSession.create(model, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      ...(intraOpNumThreads !== undefined ? { intraOpNumThreads } : {}),
    });
    return new CpuComputeSession(session);
  }

  /** Runs the graph on float32 feeds and returns its float32 output `output`. */
  async run(feeds: Readonly<Record<string, Float32Feed>>, output: string): Promise<Float32Array> {
    const tensors: Record<string, ort.Tensor> = {};
    for (const [name, f] of Object.entries(feeds)) tensors[name] = new ort.Tensor('float32', f.data, f.dims);
    const out = await this.session.run(tensors);
    const y = out[output];
    if (!y || y.type !== 'float32') throw new Error(`compute session: no float32 output ${output}`);
    return y.data as Float32Array;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
