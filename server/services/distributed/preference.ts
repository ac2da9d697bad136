import type { WorkerInfo } from '../../../nodes/protocol.js';
import { serves } from './routing.js';

/**
 * Residency preference. Every worker that serves a run's model set fetches from that set's BullMQ queue itself
 * (worker.ts); a worker that does not have the set's models loaded holds back from a queue while another live
 * worker has them all loaded and a free slot, so that worker (which saves the model load) takes the run. It
 * holds back for at most a grace per job: a registry entry can be stale (the resident worker just died, is
 * stopped, or its slot filled a moment ago), and a run must never wait on a worker that does not come.
 */

/** Whether every folder of `paths` is among `resident`. */
export function allResident(resident: readonly string[], paths: readonly string[]): boolean {
  return paths.every((p) => resident.includes(p));
}

/** Another live worker that serves `paths` with all of them resident and a slot free, if the registry shows one. */
export function residentElsewhere(selfId: string, paths: readonly string[], workers: readonly WorkerInfo[]): WorkerInfo | undefined {
  return workers.find((w) => w.id !== selfId && serves(w, paths) && allResident(w.resident, paths) && w.running.length < w.concurrency);
}

/**
 * The grace each waiting job gets, measured on this worker's own clock from the moment it first saw the job at
 * the head of its queue (job timestamps come from the API node's clock, which may be skewed against this one).
 */
export class Grace {
  private readonly firstSeen = new Map<string, number>();

  constructor(readonly ms: number) {}

  /** Milliseconds this worker should still leave `jobId` to a resident worker; 0 when it may take it now. */
  left(jobId: string, now = Date.now()): number {
    // Jobs another worker took are never seen again: forget them once well past their grace.
    for (const [id, t] of this.firstSeen) if (now - t > 10 * this.ms + 60_000) this.firstSeen.delete(id);
    const seen = this.firstSeen.get(jobId) ?? now;
    this.firstSeen.set(jobId, seen);
    return Math.max(0, seen + this.ms - now);
  }
}
