import type { Redis } from 'ioredis';
import { WorkerInfoSchema, type WorkerInfo } from '../../../nodes/protocol.js';
import { KEYS } from './redis.js';

/** Live workers, by name: a worker is live while its heartbeat key has not expired. Dead ids are dropped from the set. */
export async function readWorkers(redis: Redis): Promise<WorkerInfo[]> {
  const ids = await redis.smembers(KEYS.workers);
  if (!ids.length) return [];
  const values = await redis.mget(ids.map((id) => KEYS.worker(id)));
  const live: WorkerInfo[] = [];
  const dead: string[] = [];
  ids.forEach((id, i) => {
    const parsed = values[i] ? WorkerInfoSchema.safeParse(JSON.parse(values[i]!)) : undefined;
    if (parsed?.success) live.push(parsed.data);
    else dead.push(id);
  });
  if (dead.length) await redis.srem(KEYS.workers, ...dead);
  return live.sort((a, b) => a.name.localeCompare(b.name) || a.started_at - b.started_at);
}

/** A worker's heartbeat: its announcement, kept alive for `ttlMs`. */
export async function announceWorker(redis: Redis, info: WorkerInfo, ttlMs: number): Promise<void> {
  await redis.multi().set(KEYS.worker(info.id), JSON.stringify(info), 'PX', ttlMs).sadd(KEYS.workers, info.id).exec();
}

export async function retireWorker(redis: Redis, id: string): Promise<void> {
  await redis.multi().del(KEYS.worker(id)).srem(KEYS.workers, id).hdel(KEYS.gateStates, id).exec();
}
