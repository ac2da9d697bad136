/**
 * Releases what a server keeps between runs — loaded models with their sessions (and any GPU memory they hold) and
 * session threads, and the node cache — once no run has executed for a while, so an idle server does not sit on a
 * GPU or on tensors nobody uses. (On the CPU the C allocator keeps much of the freed heap: docs/api.md has figures.)
 * The next run loads its models again (seconds for an SD model), which is why the delay is minutes by default.
 */
export class IdleRelease {
  private active = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  /**
   * @param afterMs idle time before `release` runs; 0 turns releasing off.
   * @param release frees what is held; it must tolerate a run starting while it works (release only what is unused).
   */
  constructor(
    private readonly afterMs: number,
    private readonly release: () => Promise<void>,
    private readonly log: (message: string, err?: unknown) => void,
  ) {
    this.arm();
  }

  /** Runs `fn` as a run: the idle clock stops while it executes and restarts when the last run ends. */
  async around<T>(fn: () => Promise<T>): Promise<T> {
    this.active++;
    clearTimeout(this.timer);
    try {
      return await fn();
    } finally {
      if (--this.active === 0) this.arm();
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  private arm(): void {
    if (this.afterMs <= 0 || this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.active > 0) return;
      this.release().catch((err: unknown) => this.log('releasing idle models failed', err));
    }, this.afterMs);
    // An idle server must still be able to exit.
    this.timer.unref();
  }
}
