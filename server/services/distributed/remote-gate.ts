import type { Redis } from 'ioredis';
import type { GateState, GateWaiter } from '../../engine/step-gate.js';
import { KEYS } from './redis.js';
import { readWorkers } from './registry.js';

interface WorkerGateState extends GateState {
  readonly seq: number;
  readonly worker: string;
}

const POLL_MS = 25;
const ACK_TIMEOUT_MS = 10_000;

/**
 * TEST-ONLY. The step gate of every live worker started with --test-hooks, driven from the API node's
 * /api/test/gate: commands go out on a Redis channel and count as applied once each worker's reported state
 * carries their sequence number, so a test that holds the gate and then submits knows the hold is in force.
 * The state is the sum over workers; each waiting step names its worker.
 */
export class RemoteGate {
  constructor(private readonly redis: Redis) {}

  hold(): Promise<void> {
    return this.command({ op: 'hold' });
  }

  open(): Promise<void> {
    return this.command({ op: 'open' });
  }

  /** Whether held steps stay held when their run is cancelled (the kill -9 tests need a cancel that cannot land). */
  setIgnoreCancel(on: boolean): Promise<void> {
    return this.command({ op: 'ignore_cancel', on });
  }

  /** Lets `n` more steps through on each worker. */
  release(n: number): Promise<void> {
    return this.command({ op: 'release', n });
  }

  async state(): Promise<GateState & { readonly waiting: readonly (GateWaiter & { worker: string })[] }> {
    const states = await this.workerStates();
    const allowances = states.map((s) => s.allowance);
    return {
      held: states.length > 0 && states.every((s) => s.held),
      ignoreCancel: states.length > 0 && states.every((s) => s.ignoreCancel),
      allowance: allowances.some((a) => a === null) ? null : allowances.reduce<number>((sum, a) => sum + (a ?? 0), 0),
      passed: states.reduce((sum, s) => sum + s.passed, 0),
      waiting: states.flatMap((s) => s.waiting.map((w) => ({ ...w, worker: s.worker }))),
    };
  }

  async until(predicate: (s: GateState) => boolean, timeoutMs: number): Promise<GateState> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.state();
      if (predicate(s)) return s;
      if (Date.now() > deadline) throw new Error(`step gate: condition not met within ${timeoutMs} ms (state ${JSON.stringify(s)})`);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  private async workerStates(): Promise<WorkerGateState[]> {
    const live = new Set((await readWorkers(this.redis)).map((w) => w.id));
    const all = await this.redis.hgetall(KEYS.gateStates);
    return Object.entries(all).filter(([id]) => live.has(id)).map(([, json]) => JSON.parse(json) as WorkerGateState);
  }

  private async command(c: { op: 'hold' | 'open' | 'release' | 'ignore_cancel'; n?: number; on?: boolean }): Promise<void> {
    const seq = await this.redis.incr(KEYS.gateSeq);
    await this.redis.publish(KEYS.gateCommands, JSON.stringify({ ...c, seq }));
    const deadline = Date.now() + ACK_TIMEOUT_MS;
    while ((await this.workerStates()).some((s) => s.seq < seq)) {
      if (Date.now() > deadline) throw new Error(`step gate: workers did not apply "${c.op}" within ${ACK_TIMEOUT_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}
