/**
 * Opens a checkpoint by what its bytes are, not by its extension (users rename .ckpt/.pt/.bin/.safetensors freely):
 * `PK\x03\x04` is a PyTorch zip checkpoint, an 8-byte length followed by `{` is safetensors, and the older torch
 * formats (legacy pickle stream, tar) are refused with what to do about them.
 */
import { open } from 'node:fs/promises';
import { CheckpointError, type TensorFile } from '../tensor-file.js';
import { openSafetensorsHandle } from './safetensors.js';
import { openTorchZipHandle } from './torch-zip.js';

export type SniffedFormat = 'safetensors' | 'torch-zip' | 'torch-legacy' | 'torch-tar' | 'pickle' | 'gguf' | 'unknown';

/** What the first bytes of a file (at least 8; 512 to recognise tar) say it is. */
export function sniffCheckpointFormat(head: Uint8Array): SniffedFormat {
  const b = head;
  if (b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && ((b[2] === 3 && b[3] === 4) || (b[2] === 5 && b[3] === 6))) return 'torch-zip';
  if (b.length >= 4 && b[0] === 0x80 && b[1] === 0x02 && b[2] === 0x8a && b[3] === 0x0a) return 'torch-legacy';
  if (b.length >= 262 && String.fromCharCode(...b.subarray(257, 262)) === 'ustar') return 'torch-tar';
  if (b.length >= 4 && b[0] === 0x47 && b[1] === 0x47 && b[2] === 0x55 && b[3] === 0x46) return 'gguf';
  // '{' is every real header; '[' too, so that a header that is JSON but not an object gets the reader's message.
  if (b.length >= 9 && (b[8] === 0x7b || b[8] === 0x5b)) return 'safetensors';
  if (b.length >= 2 && b[0] === 0x80 && b[1]! >= 2 && b[1]! <= 5) return 'pickle';
  return 'unknown';
}

/** A safetensors or PyTorch zip (.ckpt/.pt/.pth) checkpoint, chosen by content. */
export async function openTensorFile(path: string): Promise<TensorFile> {
  const fh = await open(path, 'r');
  let handedOff = false;
  try {
    const head = new Uint8Array(512);
    const { bytesRead } = await fh.read(head, 0, 512, 0);
    const kind = sniffCheckpointFormat(head.subarray(0, bytesRead));
    switch (kind) {
      case 'torch-zip':
        handedOff = true;
        return await openTorchZipHandle(fh, path);
      case 'safetensors':
        handedOff = true;
        return await openSafetensorsHandle(fh, path);
      case 'torch-legacy':
        throw new CheckpointError(
          `${path}: this is a legacy (pre-1.6) PyTorch checkpoint, which FuseGraph does not read; re-save this file with torch ≥ 1.6 (torch.save(torch.load(f), new_f)) or convert it to safetensors`,
          path,
        );
      case 'torch-tar':
        throw new CheckpointError(
          `${path}: this is a tar-format (torch < 0.4) checkpoint, which FuseGraph does not read; re-save this file with torch ≥ 1.6 or convert it to safetensors`,
          path,
        );
      case 'pickle':
        throw new CheckpointError(`${path}: this is a bare pickle, not a PyTorch zip checkpoint or safetensors file; re-save it with torch.save (torch ≥ 1.6) or convert it to safetensors`, path);
      case 'gguf':
        throw new CheckpointError(`${path}: GGUF files are not supported; use a safetensors or .ckpt checkpoint`, path);
      case 'unknown':
        throw new CheckpointError(
          `${path}: not a safetensors or PyTorch zip checkpoint (${bytesRead} bytes read, starting ${Buffer.from(head.subarray(0, Math.min(8, bytesRead))).toString('hex') || 'empty'})`,
          path,
        );
    }
  } catch (e) {
    // The format readers close the handle themselves when they fail.
    if (!handedOff) await fh.close();
    throw e;
  }
}
