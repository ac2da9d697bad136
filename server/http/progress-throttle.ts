interface RunThrottle<E> {
  last: number;
  pending: E | undefined;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Coalesces one run's step frames to at most one per interval, always delivering the latest, so a fast
 * tiny model does not flood sockets and a slow one still shows every step. Callers flush before any
 * other frame of the run so the order clients see is the order things happened.
 */
export class ProgressThrottle<E> {
  private readonly runs = new Map<string, RunThrottle<E>>();

  constructor(
    private readonly intervalMs: number,
    private readonly deliver: (event: E) => void,
  ) {}

  offer(runId: string, event: E, final: boolean): void {
    const now = Date.now();
    let s = this.runs.get(runId);
    if (!s) {
      s = { last: 0, pending: undefined, timer: undefined };
      this.runs.set(runId, s);
    }
    if (final || now - s.last >= this.intervalMs) {
      this.clear(s);
      s.last = now;
      this.deliver(event);
      return;
    }
    s.pending = event;
    s.timer ??= setTimeout(() => this.flush(runId), this.intervalMs - (now - s.last));
  }

  flush(runId: string): void {
    const s = this.runs.get(runId);
    if (!s || s.pending === undefined) return;
    const event = s.pending;
    this.clear(s);
    s.last = Date.now();
    this.deliver(event);
  }

  forget(runId: string): void {
    const s = this.runs.get(runId);
    if (s) this.clear(s);
    this.runs.delete(runId);
  }

  close(): void {
    for (const s of this.runs.values()) this.clear(s);
    this.runs.clear();
  }

  private clear(s: RunThrottle<E>): void {
    if (s.timer) clearTimeout(s.timer);
    s.timer = undefined;
    s.pending = undefined;
  }
}
