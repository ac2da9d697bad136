import path from 'node:path';
import type { RunResult } from '../engine/events.js';
import type { ModelManager } from '../sd/model-manager.js';
import type { RecordedModel } from '../sd/png-meta.js';

/**
 * Where a re-run of a PNG's graph used model files other than the ones that made the PNG: one line per changed
 * part, naming the folder, the file and both hashes, so a user knows why the image differs. Uses the run's own
 * models, still resident in `models`, whose hashes SaveImage has already computed.
 */
export async function modelChanges(recorded: readonly RecordedModel[], result: RunResult, models: ModelManager, modelsRoot: string): Promise<string[]> {
  const lines: string[] = [];
  for (const used of result.models) {
    const folder = path.relative(path.resolve(modelsRoot), used.folder).split(path.sep).join('/');
    const before = recorded.find((r) => r.folder === folder);
    if (!before) continue;
    const model = await models.resident(used.key);
    if (!model) continue;
    const now = await model.fileHashes();
    for (const [part, hash] of Object.entries(before.sha256)) {
      if (now[part] === undefined || now[part] === hash) continue;
      // A checkpoint is the file the user holds: its built parts change with FuseGraph's builder, not with the model.
      if (model.checkpoint && part !== 'checkpoint') continue;
      const file = model.checkpoint
        ? path.basename(model.checkpoint)
        : path.relative(used.folder, model.folder.parts[part as keyof typeof model.folder.parts]).split(path.sep).join('/');
      lines.push(`model ${folder}: ${file} is not the file that made this PNG (sha256 ${hash.slice(0, 12)}… then, ${now[part]!.slice(0, 12)}… now): the images may differ`);
    }
  }
  return lines;
}
