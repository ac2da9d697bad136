import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Provider } from './wire.js';

export type ProviderChoice = Provider | 'auto';

/** CUDA is opt-in at install time (ONNXRUNTIME_NODE_INSTALL=cuda12): its provider library is present only then. */
export function cudaInstalled(): boolean {
  try {
    const require = createRequire(import.meta.url);
    const pkg = path.dirname(require.resolve('onnxruntime-node/package.json'));
    const dir = path.join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
    return existsSync(path.join(dir, 'libonnxruntime_providers_cuda.so')) || existsSync(path.join(dir, 'onnxruntime_providers_cuda.dll'));
  } catch {
    return false;
  }
}

/** WebGPU on Linux goes through Vulkan; without the loader Dawn only prints a warning and fails, so skip the probe. */
export function vulkanLoaderPresent(): boolean {
  if (process.platform !== 'linux') return true;
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':'), '/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib', '/lib/x86_64-linux-gnu'];
  return dirs.some((d) => d && existsSync(path.join(d, 'libvulkan.so.1')));
}

/**
 * Providers to try, in order. `auto` tries cuda when installed, then webgpu (when a Vulkan loader exists; the
 * probe fails where no adapter does), then cpu; FUSEGRAPH_NO_WEBGPU=1 skips the webgpu probe. An explicit choice is tried alone, so a user
 * who asked for cuda learns that it failed instead of silently running on the CPU.
 */
export function providerCandidates(choice: ProviderChoice): Provider[] {
  if (choice !== 'auto') return [choice];
  const list: Provider[] = [];
  if (cudaInstalled()) list.push('cuda');
  if (process.env.FUSEGRAPH_NO_WEBGPU !== '1' && vulkanLoaderPresent()) list.push('webgpu');
  list.push('cpu');
  return list;
}
