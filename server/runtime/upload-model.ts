import { DataType, GraphBuilder, type DataTypeCode } from '../onnx-writer/graph-builder.js';
import type { TensorType } from './wire.js';

const CODES: Readonly<Record<'float32' | 'float16', DataTypeCode>> = { float32: DataType.FLOAT, float16: DataType.FLOAT16 };

/**
 * A one-node ONNX model (Identity, any rank) that a WebGPU session worker runs with its output bound to GPU memory:
 * that is how onnxruntime-node turns host data into a GPU-resident tensor, which the worker then feeds to the UNet
 * on every call instead of copying the same conditioning to the GPU again (see `place` in session-worker.js).
 */
export function uploadModel(type: 'float32' | 'float16'): Uint8Array {
  const g = new GraphBuilder({ graphName: `upload_${type}` });
  const code = CODES[type];
  g.addInput('host', code, null);
  g.op('Identity', ['host'], {}, 'device');
  g.addOutput('device', code, null);
  return g.serialize().model;
}

/** The upload models a worker needs for the float inputs it may keep (the text conditioning). */
export function uploadModels(): Partial<Record<TensorType, Uint8Array>> {
  return { float32: uploadModel('float32'), float16: uploadModel('float16') };
}
