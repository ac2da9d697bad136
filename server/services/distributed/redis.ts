import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
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
  /** Channel: a run was queued on a route (its id); workers that serve its models start consuming it and fetch. */
  queued: `${NS}:queued`,
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

/** Where the Redis is, and for `rediss://` with a private CA, that CA's certificates (PEM). */
export interface RedisTarget {
  readonly url: string;
  readonly ca?: string;
}

/**
 * `--redis-ca FILE`: a CA to trust for the Redis connection, on top of Node's (and NODE_EXTRA_CA_CERTS's). Read
 * once at start, so a wrong path fails the start instead of every reconnect.
 */
export function redisTarget(url: string, caFile: string | undefined): RedisTarget {
  if (caFile === undefined) return { url };
  let ca: string;
  try {
    ca = readFileSync(caFile, 'utf8');
  } catch (err) {
    throw new Error(`--redis-ca: cannot read ${caFile}: ${(err as Error).message}`, { cause: err });
  }
  if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`--redis-ca: ${caFile} holds no PEM certificate`);
  if (!url.startsWith('rediss://')) throw new Error('--redis-ca is for TLS: the Redis URL must start with rediss://');
  return { url, ca };
}

/**
 * A connection to the Redis at `url` (`redis://[:password@]host:port[/db]`, or `rediss://` for TLS). It reconnects by
 * itself forever (BullMQ needs `maxRetriesPerRequest: null`), so a Redis restart only pauses work.
 */
export function connectRedis(target: RedisTarget, name: string): Redis {
  const { url } = target;
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
    // Added to, not instead of, the CAs Node trusts (its bundle and NODE_EXTRA_CA_CERTS).
    ...(target.ca !== undefined ? { tls: { ca: [...rootCertificates, target.ca] } } : {}),
  });
  // ioredis reports every failed reconnect; the callers' own retries say what matters.
  redis.on('error', () => {});
  return redis;
}

/** TLS verification failures: retrying cannot help, so the start fails at once and says what to do. */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_UNTRUSTED', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * Rejects within `ms` unless Redis answers, with a message naming the URL's host (never its password) and the
 * last connection error; an untrusted TLS certificate rejects at once.
 */
export async function checkReachable(redis: Redis, url: string, ms = 10_000): Promise<void> {
  const host = new URL(url).host;
  let timer: NodeJS.Timeout | undefined;
  let lastError: Error | undefined;
  let onError: ((err: Error) => void) | undefined;
  const failed = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis at ${host} did not answer within ${ms} ms${lastError ? ` (${lastError.message})` : ''}`)), ms);
    onError = (err: Error & { code?: string }) => {
      lastError = err;
      if (err.code !== undefined && UNTRUSTED.has(err.code)) {
        reject(new Error(`Redis at ${host}: its TLS certificate is not trusted (${err.code}: ${err.message}); `
          + 'give its CA with --redis-ca FILE or NODE_EXTRA_CA_CERTS=FILE'));
      }
    };
    redis.on('error', onError);
  });
  try {
    await Promise.race([redis.ping(), failed]);
  } finally {
    clearTimeout(timer);
    redis.off('error', onError!);
  }
}
