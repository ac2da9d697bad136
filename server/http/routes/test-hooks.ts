import { Router } from 'express';
import { z } from 'zod';
import type { GateState } from '../../engine/step-gate.js';
import { HttpError } from '../http-error.js';
import type { SocketStats } from '../ws-hub.js';

const GateBody = z
  .strictObject({
    hold: z.boolean().optional(),
    release_steps: z.number().int().min(0).max(1_000_000).optional(),
    ignore_cancel: z.boolean().optional(),
  })
  .refine((b) => b.hold !== undefined || b.release_steps !== undefined || b.ignore_cancel !== undefined, 'give "hold", "release_steps" or "ignore_cancel"');

const WaitBody = z.strictObject({
  /** At least this many sampler steps are held at the gate. */
  waiting: z.number().int().min(0).optional(),
  /** At least this many steps have passed the gate since the server started. */
  passed: z.number().int().min(0).optional(),
  timeout_ms: z.number().int().min(1).max(600_000).default(60_000),
});

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const parsed = schema.safeParse(value ?? {});
  if (!parsed.success) throw new HttpError(400, 'bad_request', `invalid request body: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** What the routes drive: the in-process StepGate, or (scale-out) every worker's gate through Redis. */
export interface GateControl {
  hold(): void | Promise<void>;
  open(): void | Promise<void>;
  release(n: number): void | Promise<void>;
  setIgnoreCancel(on: boolean): void | Promise<void>;
  state(): GateState | Promise<GateState>;
  until(predicate: (s: GateState) => boolean, timeoutMs: number): Promise<GateState>;
}

/**
 * TEST-ONLY routes, mounted only when the server starts with test hooks (`--test-hooks` or FUSEGRAPH_TEST_HOOKS=1):
 * they drive the step gate so a test can hold a run at a known sampler step.
 */
export function testHookRoutes(gate: GateControl, wsStats?: () => readonly SocketStats[]): Router {
  const router = Router();
  // Each WebSocket's unsent bytes (now and at peak) and skipped frames, to measure backpressure.
  router.get('/test/ws', (_req, res) => {
    res.json({ sockets: wsStats?.() ?? [] });
  });
  router.get('/test/gate', async (_req, res) => {
    res.json(await gate.state());
  });
  router.post('/test/gate', async (req, res) => {
    const body = parse(GateBody, req.body);
    if (body.ignore_cancel !== undefined) await gate.setIgnoreCancel(body.ignore_cancel);
    if (body.hold === true) await gate.hold();
    if (body.hold === false) await gate.open();
    if (body.release_steps !== undefined) await gate.release(body.release_steps);
    res.json(await gate.state());
  });
  router.post('/test/gate/wait', async (req, res) => {
    const body = parse(WaitBody, req.body);
    const want = (s: GateState): boolean =>
      s.waiting.length >= (body.waiting ?? 0) && s.passed >= (body.passed ?? 0);
    try {
      res.json(await gate.until(want, body.timeout_ms));
    } catch (err) {
      throw new HttpError(408, 'timeout', (err as Error).message, { gate: await gate.state() });
    }
  });
  return router;
}
