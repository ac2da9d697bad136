/**
 * Makes sure the placeholder demo models exist (models/tiny/general and models/tiny/cartoon), so a fresh clone's
 * `npm start` can run graphs/demo-fusion.json without any download or files from outside the repository.
 * Existing folders are left alone.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { findRepoRoot, writeTinyModel } from './make-tiny-model.js';

const root = findRepoRoot();
for (const [name, seed] of [['general', 1], ['cartoon', 2]] as const) {
  const dir = path.join(root, 'models', 'tiny', name);
  if (existsSync(path.join(dir, 'unet', 'model.onnx'))) continue;
  await writeTinyModel(dir, { seed, tokenizerDir: 'byte-level' });
  console.log(`created placeholder model ${path.relative(root, dir)}`);
}
