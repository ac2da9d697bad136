import { existsSync, readFileSync, readdirSync } from 'node:fs';
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

/** The Vulkan driver manifests the loader would read: VK_DRIVER_FILES / VK_ICD_FILENAMES when set, else the standard folders. */
function vulkanDriverManifests(): string[] {
  const listed = process.env.VK_DRIVER_FILES ?? process.env.VK_ICD_FILENAMES;
  if (listed) return listed.split(path.delimiter).filter(Boolean);
  return ['/usr/share/vulkan/icd.d', '/usr/local/share/vulkan/icd.d', '/etc/vulkan/icd.d'].flatMap((dir) => {
    try {
      return readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => path.join(dir, f));
    } catch {
      return [];
    }
  });
}

/** Mesa's lavapipe and SwiftShader: CPU rasterisers, on which WebGPU runs far slower than the CPU provider. */
const SOFTWARE_DRIVER = /lvp|lavapipe|swiftshader|swrast/i;

/** Whether every Vulkan driver found is a software one (false when none is found: the probe then decides). */
export function onlySoftwareVulkan(): boolean {
  const manifests = vulkanDriverManifests();
  return (
    manifests.length > 0 &&
    manifests.every((file) => {
      if (SOFTWARE_DRIVER.test(path.basename(file))) return true;
      try {
        const library = (JSON.parse(readFileSync(file, 'utf8')) as { ICD?: { library_path?: unknown } }).ICD?.library_path;
        return typeof library === 'string' && SOFTWARE_DRIVER.test(path.basename(library));
      } catch {
        return false;
      }
    })
  );
}

/**
 * Providers to try, in order. `auto` tries cuda when installed, then webgpu (when a Vulkan loader and a hardware
 * driver exist; the probe fails where no adapter does), then cpu; FUSEGRAPH_NO_WEBGPU=1 skips the webgpu probe.
 * An explicit choice is tried alone, so a user who asked for cuda learns that it failed instead of silently
 * running on the CPU, and `webgpu` still reaches a software driver when asked for.
 */
export function providerCandidates(choice: ProviderChoice): Provider[] {
  if (choice !== 'auto') return [choice];
  const list: Provider[] = [];
  if (cudaInstalled()) list.push('cuda');
  if (process.env.FUSEGRAPH_NO_WEBGPU !== '1' && vulkanLoaderPresent() && !onlySoftwareVulkan()) list.push('webgpu');
  list.push('cpu');
  return list;
}
