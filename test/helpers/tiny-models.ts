import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TinyModelOptions } from '../../tools/tiny-models/make-tiny-model.js';
import { writeTinyModel } from '../../tools/tiny-models/make-tiny-model.js';
import { TOKENIZER_FIXTURE } from './graphs.js';

export interface TinyWorkspace {
  readonly root: string;
  readonly models: string;
  readonly input: string;
  readonly output: string;
  cleanup(): Promise<void>;
}

/** A temp folder with models/<name> for each requested tiny model, an empty input/ folder and an output/ root. */
export async function tinyWorkspace(models: Record<string, TinyModelOptions>): Promise<TinyWorkspace> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-test-'));
  const ws = {
    root,
    models: path.join(root, 'models'),
    input: path.join(root, 'input'),
    output: path.join(root, 'output'),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
  await mkdir(ws.input, { recursive: true });
  for (const [name, opts] of Object.entries(models)) await writeTinyModel(path.join(ws.models, name), { tokenizerDir: TOKENIZER_FIXTURE, ...opts });
  return ws;
}
