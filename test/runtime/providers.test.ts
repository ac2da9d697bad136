import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { cudaInstalled, onlySoftwareVulkan, providerCandidates } from '../../server/runtime/providers.js';

describe('provider auto', () => {
  const saved = { ...process.env };
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-providers-'));
    // What vulkanLoaderPresent looks for; the file's contents do not matter to it.
    await writeFile(path.join(dir, 'libvulkan.so.1'), '');
    await writeFile(path.join(dir, 'lvp_icd.x86_64.json'), JSON.stringify({ ICD: { library_path: '/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so' } }));
    await writeFile(path.join(dir, 'renamed.json'), JSON.stringify({ ICD: { library_path: 'libvk_swiftshader.so' } }));
    await writeFile(path.join(dir, 'nvidia_icd.json'), JSON.stringify({ ICD: { library_path: 'libGLX_nvidia.so.0' } }));
  });
  afterEach(() => {
    for (const key of ['LD_LIBRARY_PATH', 'VK_DRIVER_FILES', 'VK_ICD_FILENAMES', 'FUSEGRAPH_NO_WEBGPU']) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const drivers = (...names: string[]): void => {
    process.env.LD_LIBRARY_PATH = dir;
    delete process.env.VK_ICD_FILENAMES;
    process.env.VK_DRIVER_FILES = names.map((n) => path.join(dir, n)).join(path.delimiter);
  };
  const tail = cudaInstalled() ? ['cuda'] : [];

  it('skips WebGPU when the only Vulkan drivers are software rasterisers (by file name or by library)', () => {
    drivers('lvp_icd.x86_64.json', 'renamed.json');
    assert.equal(onlySoftwareVulkan(), true);
    assert.deepEqual(providerCandidates('auto'), [...tail, 'cpu']);
  });

  it('tries WebGPU before the CPU when a hardware driver is there', () => {
    drivers('lvp_icd.x86_64.json', 'nvidia_icd.json');
    assert.equal(onlySoftwareVulkan(), false);
    assert.deepEqual(providerCandidates('auto'), [...tail, 'webgpu', 'cpu']);
    process.env.FUSEGRAPH_NO_WEBGPU = '1';
    assert.deepEqual(providerCandidates('auto'), [...tail, 'cpu']);
  });

  it('still gives an explicit webgpu (or any explicit provider) alone', () => {
    drivers('lvp_icd.x86_64.json');
    assert.deepEqual(providerCandidates('webgpu'), ['webgpu']);
    assert.deepEqual(providerCandidates('cpu'), ['cpu']);
  });
});
