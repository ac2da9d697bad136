export interface RateLimit {
  /** Lines let through per window. */
  readonly lines: number;
  readonly windowMs: number;
  readonly now?: () => number;
}

/**
 * A one-line logger for things clients do wrong (rejected frames): each is worth a line, but a client sending
 * thousands must not flood the log. Beyond `lines` per window, lines are counted and reported as one summary line
 * when the next window opens.
 */
export function rateLimitedLog(log: (message: string) => void, limit: RateLimit = { lines: 20, windowMs: 10_000 }): (line: string) => void {
  const now = limit.now ?? Date.now;
  let windowStart = -Infinity;
  let used = 0;
  let suppressed = 0;
  return (line) => {
    const t = now();
    if (t - windowStart >= limit.windowMs) {
      if (suppressed > 0) log(`(${suppressed} similar line${suppressed === 1 ? '' : 's'} suppressed)`);
      windowStart = t;
      used = 0;
      suppressed = 0;
    }
    if (used < limit.lines) {
      used++;
      log(line);
    } else {
      suppressed++;
    }
  };
}
