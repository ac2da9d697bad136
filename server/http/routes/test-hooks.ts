import { Router } from 'express';
import { z } from 'zod';
import type { StepGate } from '../../engine/step-gate.js';
import { HttpError } from '../http-error.js';
import type { SocketStats } from '../ws-hub.js';

const GateBody = z
  .strictObject({
    hold: z.boolean().optional(),
    release_steps: z.number().int().min(0).max(1_000_000).optional(),
  })
  .refine((b) => b.hold !== undefined || b.release_steps !== undefined, 'give "hold" and/or "release_steps"');

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

/**
 * TEST-ONLY routes, mounted only when the server starts with test hooks (`--test-hooks` or FUSEGRAPH_TEST_HOOKS=1):
 * they drive the step gate so a test can hold a run at a known sampler step.
 */
export function testHookRoutes(gate: StepGate, wsStats?: () => readonly SocketStats[]): Router {
  const router = Router();
  // Each WebSocket's unsent bytes (now and at peak) and skipped frames, to measure backpressure.
  router.get('/test/ws', (_req, res) => {
    res.json({ sockets: wsStats?.() ?? [] });
  });
  router.get('/test/gate', (_req, res) => {
    res.json(gate.state());
  });
  router.post('/test/gate', (req, res) => {
    const body = parse(GateBody, req.body);
    if (body.hold === true) gate.hold();
    if (body.hold === false) gate.open();
    if (body.release_steps !== undefined) gate.release(body.release_steps);
    res.json(gate.state());
  });
  router.post('/test/gate/wait', async (req, res) => {
    const body = parse(WaitBody, req.body);
    const want = (s: ReturnType<StepGate['state']>): boolean =>
      s.waiting.length >= (body.waiting ?? 0) && s.passed >= (body.passed ?? 0);
    try {
      res.json(await gate.until(want, body.timeout_ms));
    } catch (err) {
      throw new HttpError(408, 'timeout', (err as Error).message, { gate: gate.state() });
    }
  });
  return router;
}
