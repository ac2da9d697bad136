import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, type RunningServer } from '../../server/http/start.js';
import { writeTinyModel } from '../tiny-models/make-tiny-model.js';

const TOKENIZER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'server', 'sd', 'clip-tokenizer');

export const FUZZ_MODEL = 'tiny';
/** A folder whose scheduler asks for 1e9 training timesteps, which once froze the server (issue 27); graphs are pointed at it. */
export const FUZZ_HOSTILE_MODEL = 'timesteps-1e9';

/** A real server on a temp folder with one tiny model, its queue paused (fuzzed runs are queued, never executed). */
export async function fuzzServer(log: (message: string, err?: unknown) => void): Promise<{ server: RunningServer; logs: string[]; remove(): Promise<void> }> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-fuzz-'));
  await writeTinyModel(path.join(root, 'models', FUZZ_MODEL), { tokenizerDir: TOKENIZER });
  await writeTinyModel(path.join(root, 'models', FUZZ_HOSTILE_MODEL), { tokenizerDir: TOKENIZER, schedulerConfig: { num_train_timesteps: 1e9 } });
  await mkdir(path.join(root, 'input'), { recursive: true });
  const logs: string[] = [];
  const server = await startServer({
    port: 0,
    modelsRoot: path.join(root, 'models'),
    inputRoot: path.join(root, 'input'),
    outputRoot: path.join(root, 'output'),
    dataDir: path.join(root, 'data'),
    graphsDir: path.join(root, 'graphs'),
    clientDir: path.join(root, 'client'),
    maxQueuedPerClient: 1_000_000,
    log: (message, err) => {
      logs.push(message);
      log(message, err);
    },
  });
  await fetch(`${server.url}/api/queue/pause`, { method: 'POST' });
  return { server, logs, remove: async () => {
    await server.close();
    await rm(root, { recursive: true, force: true });
  } };
}
