import { Redis } from 'ioredis';

/** Every key FuseGraph writes starts with this, so one Redis can hold other data (or a second FuseGraph under another DB). */
const NS = 'fusegraph';

/** BullMQ's own keys (queues, jobs, locks). */
export const BULL_PREFIX = `${NS}:bull`;

export const KEYS = {
  /** Set of live worker ids; an id whose heartbeat key expired is dropped by the next reader. */
  workers: `${NS}:workers`,
  worker: (id: string) => `${NS}:worker:${id}`,
  /** Hash: route id → JSON list of the model paths whose runs its BullMQ queue holds. */
  routes: `${NS}:routes`,
  /** Channel: a route was created; workers that serve its models start consuming it. */
  routesChannel: `${NS}:routes`,
  /** Channel: a run id to cancel, for whichever worker runs it. */
  cancelChannel: `${NS}:cancel`,
  /** Set when a run is cancelled, so a worker that takes the run later (a retry) stops it too: cancels are durable. */
  cancelled: (run: string) => `${NS}:cancelled:${run}`,
  /** Stream of one run's events, written by the worker that runs it and read by the API node. */
  events: (run: string) => `${NS}:run:${run}:events`,
  /** Hash: an output of one run (node|kind|index) → its file name in the API node's output root (retries overwrite, not add). */
  runFiles: (run: string) => `${NS}:run:${run}:files`,
  /** Hash: worker id/file name → the API node's file name, so a worker's cached output node re-sends the same file. */
  files: `${NS}:files`,
  /** TEST-ONLY step gate: command channel, sequence counter, per-worker states, state channel. */
  gateCommands: `${NS}:test:gate`,
  gateSeq: `${NS}:test:gate-seq`,
  gateStates: `${NS}:test:gate-states`,
  gateStateChannel: `${NS}:test:gate-state`,
} as const;

/** How long a finished run's events and job stay in Redis, so an API node restarted within it still collects the result. */
export const FINISHED_TTL_S = 3600;

/**
 * A connection to the Redis at `url` (`redis://[:password@]host:port[/db]`, or `rediss://` for TLS). It reconnects by
 * itself forever (BullMQ needs `maxRetriesPerRequest: null`), so a Redis restart only pauses work.
 */
export function connectRedis(url: string, name: string): Redis {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`--redis must be a URL such as redis://127.0.0.1:6379, got "${url}"`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new Error(`--redis must start with redis:// or rediss:// (TLS), got "${parsed.protocol}"`);
  }
  const redis = new Redis(url, {
    maxRetriesPerRequest: null,
    connectionName: `fusegraph-${name}`,
    retryStrategy: (times) => Math.min(100 * times, 2000),
  });
  // ioredis reports every failed reconnect; the callers' own retries say what matters.
  redis.on('error', () => {});
  return redis;
}

/** Rejects within `ms` unless Redis answers, with a message naming the URL's host (never its password). */
export async function checkReachable(redis: Redis, url: string, ms = 10_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis at ${new URL(url).host} did not answer within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([redis.ping(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
