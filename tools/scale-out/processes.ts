import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Real processes for scale-out tests and benchmarks: a private redis-server and `fusegraph worker`s. */

const BIN = fileURLToPath(new URL('../../bin/fusegraph.js', import.meta.url));

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== 'object' || address === null) throw new Error('no port');
  return address.port;
}

/** Waits for a line of a child's output matching `pattern`, failing if the child exits first. */
function waitForLine(child: ChildProcess, pattern: RegExp, what: string, log: string[], timeoutMs = 60_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start in ${timeoutMs} ms:\n${log.join('')}`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      if (!pattern.test(log.join(''))) return;
      cleanup();
      resolve();
      void chunk;
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`${what} exited (${code}) before starting:\n${log.join('')}`));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

function spawnLogged(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): { child: ChildProcess; log: string[] } {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const log: string[] = [];
  child.stdout!.on('data', (d: Buffer) => log.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
  return { child, log };
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** A private redis-server on a free loopback port, no persistence, in a temp dir; nothing is left running. */
export interface TestRedis {
  readonly url: string;
  readonly port: number;
  /** Stops and starts the server on the same port (its data is gone: it persists nothing). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `password`: the server requires it (`requirepass`), and `url` carries it. `tls`: the server speaks only TLS,
 * with that certificate and key (PEM files), and `url` is `rediss://`.
 */
export async function startRedis(o: { password?: string; tls?: { cert: string; key: string; ca: string } } = {}): Promise<TestRedis> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-redis-'));
  const port = await freePort();
  let current: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    const auth = o.password !== undefined ? ['--requirepass', o.password] : [];
    const listen = o.tls
      ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', o.tls.cert, '--tls-key-file', o.tls.key, '--tls-ca-cert-file', o.tls.ca, '--tls-auth-clients', 'no']
      : ['--port', String(port)];
    const { child, log } = spawnLogged('redis-server', [...listen, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...auth]);
    current = child;
    await waitForLine(child, /Ready to accept connections/, 'redis-server', log, 20_000);
  };
  await launch();
  const kill = async (): Promise<void> => {
    if (!current) return;
    const c = current;
    current = undefined;
    c.kill('SIGTERM');
    await exited(c);
  };
  return {
    url: `${o.tls ? 'rediss' : 'redis'}://${o.password !== undefined ? `:${encodeURIComponent(o.password)}@` : ''}127.0.0.1:${port}`,
    port,
    restart: async () => {
      await kill();
      await launch();
    },
    stop: async () => {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A `fusegraph worker` process (one compute thread unless told). */
export interface WorkerProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly log: string[];
  /** kill -9: no goodbye, its run stays locked in BullMQ until the lock lapses. */
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `extra` adds worker options (tests add --test-hooks). `cpu` pins the process to that core with taskset: the
 * benchmark's "one compute thread" worker, since a worker runs each model's sessions on a thread of its own and
 * the sampler math on its main thread, --threads 1 alone lets one worker use more than one core.
 */
export async function startWorker(
  redisUrl: string,
  o: { name: string; models: string; out: string; threads?: number; lockMs?: number; cpu?: number; extra?: string[]; env?: NodeJS.ProcessEnv },
): Promise<WorkerProcess> {
  const args = [
    BIN, 'worker', '--redis', redisUrl, '--models', o.models, '--out', o.out, '--name', o.name,
    '--threads', String(o.threads ?? 1), '--lock-ms', String(o.lockMs ?? 3000), ...(o.extra ?? []),
  ];
  const env = { ...process.env, ...o.env };
  const { child, log } = o.cpu === undefined ? spawnLogged(process.execPath, args, env) : spawnLogged('taskset', ['-c', String(o.cpu), process.execPath, ...args], env);
  await waitForLine(child, /FuseGraph worker "/, `worker ${o.name}`, log);
  return {
    name: o.name,
    child,
    log,
    kill9: async () => {
      child.kill('SIGKILL');
      await exited(child);
    },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // SIGTERM lets a running run finish; one that does not within 5 s is left to BullMQ like a crash.
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited(child);
      clearTimeout(timer);
    },
  };
}

