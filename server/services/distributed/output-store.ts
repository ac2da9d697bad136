import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Redis } from 'ioredis';
import type { OutputFile } from '../../engine/events.js';
import { writeNumbered } from '../../impls/image/save-image.js';
import { replaceFile } from '../../impls/paths.js';
import { FINISHED_TTL_S, KEYS } from './redis.js';

/** The worker-file map lives while outputs keep coming; after a quiet week a cached output is simply stored anew. */
const FILE_MAP_TTL_S = 7 * 24 * 3600;

/** A worker's file name as SaveImage/SaveLatent write them: one plain segment, never a path. */
const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}\.(png|npy)$/;

/**
 * Writes the output files workers send into the API node's output root, where /api/images serves them. Names
 * are the API node's own (SaveImage numbering in its root); a retried run overwrites the files its earlier
 * attempt sent instead of adding more, and a worker's cached output node re-sent later maps to the same file.
 */
export class OutputStore {
  constructor(private readonly redis: Redis, private readonly root: string) {}

  async store(
    runId: string,
    workerId: string,
    file: { node: string; kind: 'image' | 'latent'; name: string },
    index: number,
    bytes: Buffer,
  ): Promise<OutputFile> {
    const ext = file.kind === 'image' ? '.png' : '.npy';
    if (!SAFE_NAME.test(file.name) || !file.name.endsWith(ext)) throw new Error(`a worker sent an output named ${JSON.stringify(file.name)}`);
    const runField = `${file.node}|${file.kind}|${index}`;
    const workerField = `${workerId}/${file.name}`;
    const known = (await this.redis.hget(KEYS.runFiles(runId), runField)) ?? (await this.redis.hget(KEYS.files, workerField));
    await mkdir(this.root, { recursive: true });
    let name: string;
    if (known !== null) {
      name = known;
      await replaceFile(this.root, name, bytes);
    } else if (file.kind === 'image') {
      name = await writeNumbered(this.root, file.name.replace(/_\d{5,}\.png$/, '').replace(/\.png$/, ''), bytes);
    } else {
      // SaveLatent's file name is the user's choice, overwritten on purpose (docs/api.md): keep it.
      name = file.name;
      await replaceFile(this.root, name, bytes);
    }
    await this.redis
      .multi()
      .hset(KEYS.runFiles(runId), runField, name)
      .expire(KEYS.runFiles(runId), FINISHED_TTL_S)
      .hset(KEYS.files, workerField, name)
      .expire(KEYS.files, FILE_MAP_TTL_S)
      .exec();
    return { node: file.node, kind: file.kind, name, path: path.join(this.root, name) };
  }
}
