import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isLoopbackHost } from './auth.js';

export interface ServerOptions {
  /** Interface to listen on; anything but loopback requires a token. Default 127.0.0.1. */
  host?: string;
  /** Default 8188; 0 picks a free port. */
  port?: number;
  /** Bearer token required on /api and /ws when set. */
  token?: string;
  modelsRoot: string;
  inputRoot: string;
  outputRoot: string;
  /** Folder of the SQLite database (queue and history). Default .fusegraph. */
  dataDir?: string;
  /** Bundled example graphs. Default <repo>/graphs. */
  graphsDir?: string;
  /** Built editor served at /. Default <repo>/dist/client. */
  clientDir?: string;
  /** Runs executed at once. Default 1. */
  concurrency?: number;
  /** Byte budget of loaded model sessions. */
  maxModelMemory?: number;
  /** A preview every N sampling steps; 0 = none. Default 5. */
  previewEvery?: number;
  /** Largest JSON body, in body-parser syntax. Default 5mb. */
  bodyLimit?: string;
  /** Largest PNG accepted by /api/graph-from-png. Default 20mb. */
  pngLimit?: string;
  /**
   * TEST-ONLY: mount /api/test/* and make every sampler step pass a step gate tests can hold. Default false, or
   * true when the environment has FUSEGRAPH_TEST_HOOKS=1. Never enable on a server people use.
   */
  testHooks?: boolean;
  /** Unsent bytes above which a WebSocket skips progress and preview frames. Default 4 MiB. */
  wsBacklogBytes?: number;
  /** Unsent bytes above which a WebSocket that stopped reading is dropped. Default 64 MiB. */
  wsMaxBacklogBytes?: number;
  /** Where server-side failures are reported. Default console.error. */
  log?: (message: string, err?: unknown) => void;
}

export type ResolvedOptions = Required<Omit<ServerOptions, 'token' | 'maxModelMemory' | 'wsBacklogBytes' | 'wsMaxBacklogBytes'>> &
  Pick<ServerOptions, 'token' | 'maxModelMemory' | 'wsBacklogBytes' | 'wsMaxBacklogBytes'>;

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

function defaultLog(message: string, err?: unknown): void {
  if (err === undefined) console.error(`[fusegraph] ${message}`);
  else console.error(`[fusegraph] ${message}:`, err);
}

function check(ok: boolean, message: string): void {
  if (!ok) throw new Error(message);
}

/** Fills defaults and refuses unsafe or meaningless settings before anything is opened. */
export function resolveOptions(o: ServerOptions): ResolvedOptions {
  const host = o.host ?? '127.0.0.1';
  const token = o.token === '' ? undefined : o.token;
  check(
    token !== undefined || isLoopbackHost(host),
    `refusing to listen on ${host} without a token: anyone who can reach it could run graphs and read outputs. ` +
      'Pass a token (--token) or listen on 127.0.0.1.',
  );
  const port = o.port ?? 8188;
  check(Number.isInteger(port) && port >= 0 && port <= 65535, `port must be an integer 0–65535, got ${port}`);
  const concurrency = o.concurrency ?? 1;
  check(Number.isInteger(concurrency) && concurrency >= 1, `concurrency must be an integer ≥ 1, got ${concurrency}`);
  const previewEvery = o.previewEvery ?? 5;
  check(Number.isInteger(previewEvery) && previewEvery >= 0, `previewEvery must be an integer ≥ 0, got ${previewEvery}`);
  if (o.maxModelMemory !== undefined) {
    check(Number.isFinite(o.maxModelMemory) && o.maxModelMemory > 0, `maxModelMemory must be a positive number of bytes, got ${o.maxModelMemory}`);
  }
  return {
    host,
    port,
    token,
    modelsRoot: resolve(o.modelsRoot),
    inputRoot: resolve(o.inputRoot),
    outputRoot: resolve(o.outputRoot),
    dataDir: resolve(o.dataDir ?? '.fusegraph'),
    graphsDir: resolve(o.graphsDir ?? resolve(REPO_ROOT, 'graphs')),
    clientDir: resolve(o.clientDir ?? resolve(REPO_ROOT, 'dist/client')),
    concurrency,
    maxModelMemory: o.maxModelMemory,
    previewEvery,
    bodyLimit: o.bodyLimit ?? '5mb',
    pngLimit: o.pngLimit ?? '20mb',
    testHooks: o.testHooks ?? process.env.FUSEGRAPH_TEST_HOOKS === '1',
    log: o.log ?? defaultLog,
    wsBacklogBytes: o.wsBacklogBytes,
    wsMaxBacklogBytes: o.wsMaxBacklogBytes,
  };
}
