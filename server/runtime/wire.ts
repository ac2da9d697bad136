/** Messages between the main thread and a session worker. Tensors travel as typed arrays (structured clone). */
export type TensorType = 'float32' | 'float16' | 'int32' | 'int64';

export interface WireTensor {
  readonly type: TensorType;
  readonly dims: readonly number[];
  readonly data: Float32Array | Uint16Array | Int32Array | BigInt64Array;
}

/**
 * A feed the worker keeps across calls, for inputs that stay the same for a whole sampling loop (the text
 * conditioning): sent once with `tensor`, then referred to by `ref` alone. `drop` names kept tensors to forget.
 */
export interface KeptFeed {
  readonly ref: string;
  readonly tensor?: WireTensor;
  readonly drop?: readonly string[];
}

export type Feed = WireTensor | KeptFeed;

export interface ValueMeta {
  readonly name: string;
  readonly type: string;
  /** Numbers for fixed dims, strings for symbolic ones; [] for a scalar. */
  readonly shape: readonly (number | string)[];
}

export interface PartMeta {
  readonly inputs: readonly ValueMeta[];
  readonly outputs: readonly ValueMeta[];
}

export type Provider = 'cpu' | 'webgpu' | 'cuda';

export type WorkerRequest =
  | {
      readonly id: number;
      readonly op: 'open';
      readonly parts: Readonly<Record<string, string>>;
      readonly providers: readonly Provider[];
      readonly threads: number;
      /** Identity models per element type (upload-model.ts) for keeping KeptFeeds in GPU memory on WebGPU. */
      readonly uploads?: Partial<Record<TensorType, Uint8Array>>;
    }
  | { readonly id: number; readonly op: 'run'; readonly part: string; readonly feeds: Readonly<Record<string, Feed>>; readonly fetch: readonly string[] }
  | { readonly id: number; readonly op: 'close' };

export interface OpenResult {
  readonly provider: Provider;
  readonly parts: Readonly<Record<string, PartMeta>>;
  /** Providers tried before the one that worked, with why they failed. */
  readonly fallbacks: readonly { provider: Provider; error: string }[];
  /** Whether kept tensors live in GPU memory, so a call sends only its changing inputs to the device. */
  readonly keepsOnDevice: boolean;
}

/**
 * A slice of one large output, sent by a session process ahead of its answer (session-channel.ts): the answer then
 * carries that output as a `SlicedTensor`.
 */
export interface OutputSlice {
  readonly id: number;
  readonly slice: string;
  readonly at: number;
  readonly total: number;
  readonly bytes: Uint8Array;
}

/** An output whose bytes came in OutputSlices. */
export interface SlicedTensor {
  readonly type: TensorType;
  readonly dims: readonly number[];
  readonly sliced: number;
}

export type WorkerResponse =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: string; readonly file?: string };
