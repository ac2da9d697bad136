import { RunCancelledError } from './errors.js';

/** Where a sampler loop is held: its node and the 1-based step it is about to compute. */
export interface GateWaiter {
  readonly node: string;
  readonly step: number;
  readonly steps: number;
}

export interface GateState {
  /** Whether steps beyond `allowance` wait. */
  readonly held: boolean;
  /** Steps that may still pass before the gate holds again (null when open). */
  readonly allowance: number | null;
  /** Sampler steps that have passed the gate since the server started. */
  readonly passed: number;
  /** Held steps ignore their run's cancellation (to test what happens when a server dies before a run notices). */
  readonly ignoreCancel: boolean;
  readonly waiting: readonly GateWaiter[];
}

interface Pending extends GateWaiter {
  readonly resolve: () => void;
}

/**
 * TEST-ONLY. A gate every sampler step passes before it computes, so a test can hold a run at a known step,
 * look at it, then let it go, instead of hoping that many steps are slow enough. Open by default; the server
 * only creates one when started with test hooks (`--test-hooks`), and nothing else waits on it.
 */
export class StepGate {
  private allowance = Infinity;
  private passedCount = 0;
  private readonly pending: Pending[] = [];
  private ignoreCancel = false;
  private watchers: { predicate: (s: GateState) => boolean; resolve: (s: GateState) => void }[] = [];

  /** `onChange` hears every state change (a worker process reports its gate to the API node through it). */
  constructor(private readonly onChange?: (s: GateState) => void) {}

  /** Steps that arrive from now on wait until released. */
  hold(): void {
    this.allowance = 0;
    this.notify();
  }

  /** Lets every waiting and future step through. */
  open(): void {
    this.allowance = Infinity;
    this.flush();
  }

  /** Lets `n` more steps through (the waiting ones first, in arrival order), then holds again. */
  release(n: number): void {
    if (this.allowance !== Infinity) this.allowance += n;
    this.flush();
  }

  /** Whether steps that start waiting from now on ignore their run's cancellation. */
  setIgnoreCancel(on: boolean): void {
    this.ignoreCancel = on;
    this.notify();
  }

  state(): GateState {
    return {
      held: this.allowance !== Infinity,
      allowance: this.allowance === Infinity ? null : this.allowance,
      passed: this.passedCount,
      ignoreCancel: this.ignoreCancel,
      waiting: this.pending.map(({ node, step, steps }) => ({ node, step, steps })),
    };
  }

  /** Resolves once the state matches (checked now and after every change), or rejects after `timeoutMs`. */
  until(predicate: (s: GateState) => boolean, timeoutMs: number): Promise<GateState> {
    const now = this.state();
    if (predicate(now)) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const watcher = {
        predicate,
        resolve: (s: GateState) => {
          clearTimeout(timer);
          resolve(s);
        },
      };
      const timer = setTimeout(() => {
        this.watchers = this.watchers.filter((w) => w !== watcher);
        reject(new Error(`step gate: condition not met within ${timeoutMs} ms (state ${JSON.stringify(this.state())})`));
      }, timeoutMs);
      this.watchers.push(watcher);
    });
  }

  /** Called by a sampler before each step; resolves when the step may run, rejects if the run is cancelled first. */
  pass(at: GateWaiter, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(new RunCancelledError());
    if (this.allowance > 0) {
      this.allowance--;
      this.passedCount++;
      this.notify();
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.pending.indexOf(entry);
        if (i >= 0) this.pending.splice(i, 1);
        this.notify();
        reject(new RunCancelledError());
      };
      const entry: Pending = {
        ...at,
        resolve: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      if (!this.ignoreCancel) signal.addEventListener('abort', onAbort, { once: true });
      this.pending.push(entry);
      this.notify();
    });
  }

  private flush(): void {
    while (this.pending.length && this.allowance > 0) {
      this.allowance--;
      this.passedCount++;
      this.pending.shift()!.resolve();
    }
    this.notify();
  }

  private notify(): void {
    if (this.onChange) this.onChange(this.state());
    if (!this.watchers.length) return;
    const s = this.state();
    this.watchers = this.watchers.filter((w) => {
      if (!w.predicate(s)) return true;
      w.resolve(s);
      return false;
    });
  }
}
