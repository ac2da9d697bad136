import { readFile } from 'node:fs/promises';
import type { Redis } from 'ioredis';
import type { ExecutionEvent } from '../../engine/events.js';
import type { RunError } from '../../../nodes/protocol.js';
import { FINISHED_TTL_S, KEYS } from './redis.js';

/**
 * One entry of a run's event stream (worker → API node). Engine events travel as they are, except that a
 * preview's PNG and each output file's bytes ride in the entry's binary field, so no filesystem is shared.
 */
export type StreamEntry =
  | { readonly type: 'attempt'; readonly worker: string; readonly worker_id: string; readonly attempt: number }
  | Extract<ExecutionEvent, { type: 'node_started' | 'node_cached' | 'node_done' | 'progress' | 'warning' }>
  | { readonly type: 'preview'; readonly node: string; readonly step: number; readonly steps: number }
  | { readonly type: 'file'; readonly node: string; readonly kind: 'image' | 'latent'; readonly name: string }
  | { readonly type: 'output'; readonly node: string }
  | {
    readonly type: 'done';
    readonly timings: Readonly<Record<string, number>>;
    readonly unetCalls: Readonly<Record<string, number>>;
    readonly cachedNodes: readonly string[];
    readonly ms: number;
  }
  | { readonly type: 'error'; readonly error: RunError }
  | { readonly type: 'cancelled' };

export type Terminal = Extract<StreamEntry, { type: 'done' | 'error' | 'cancelled' }>;

/** Decodes XREAD's field list (`e` = the JSON entry, `b` = optional bytes). */
export function decodeEntry(fields: readonly Buffer[]): { entry: StreamEntry; bytes: Buffer | undefined } {
  let entry: StreamEntry | undefined;
  let bytes: Buffer | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!.toString();
    if (name === 'e') entry = JSON.parse(fields[i + 1]!.toString('utf8')) as StreamEntry;
    else if (name === 'b') bytes = fields[i + 1];
  }
  if (!entry) throw new Error('a run event stream entry without an event');
  return { entry, bytes };
}

export function appendEntry(redis: Redis, runId: string, entry: StreamEntry, bytes?: Buffer): Promise<unknown> {
  const key = KEYS.events(runId);
  return bytes ? redis.xadd(key, '*', 'e', JSON.stringify(entry), 'b', bytes) : redis.xadd(key, '*', 'e', JSON.stringify(entry));
}

/**
 * The worker's side of one attempt: engine events arrive synchronously, reading output files does not, so
 * entries are chained to keep the order the engine emitted them in.
 */
export class StreamWriter {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly redis: Redis, private readonly runId: string) {}

  push(entry: StreamEntry, bytes?: Buffer): void {
    this.chain = this.chain.then(() => appendEntry(this.redis, this.runId, entry, bytes));
  }

  event(e: ExecutionEvent): void {
    switch (e.type) {
      case 'preview':
        return this.push({ type: 'preview', node: e.node, step: e.step, steps: e.steps }, e.png);
      case 'output':
        for (const f of e.files) {
          this.chain = this.chain.then(async () =>
            appendEntry(this.redis, this.runId, { type: 'file', node: f.node, kind: f.kind, name: f.name }, await readFile(f.path)));
        }
        return this.push({ type: 'output', node: e.node });
      default:
        return this.push(e);
    }
  }

  /** Writes the run's last entry after every earlier one; the stream then expires once the API node had time to read it. */
  async end(entry: Terminal): Promise<void> {
    this.push(entry);
    await this.chain;
    await this.redis.expire(KEYS.events(this.runId), FINISHED_TTL_S);
  }
}
