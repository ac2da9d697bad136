import { Router } from 'express';
import { z } from 'zod';
import { HttpError, notFound } from '../http-error.js';
import type { RunQueue } from '../../services/run-queue.js';
import type { Submitter } from '../../services/submit-run.js';
import { ClientIdSchema } from '../../../nodes/protocol.js';

const SubmitBody = z.strictObject({
  graph: z.unknown(),
  client_id: ClientIdSchema.optional(),
  /** Queue ahead of every queued run. */
  front: z.boolean().optional(),
});

const ValidateBody = z.strictObject({ graph: z.unknown() });

const ListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  before: z.string().min(1).max(100).optional(),
});

function parseOr400<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new HttpError(400, 'bad_request', `invalid ${what}: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

export function runsRoutes(queue: RunQueue, submit: Submitter): Router {
  const router = Router();

  router.post('/runs', async (req, res) => {
    if (req.body === undefined) {
      throw new HttpError(415, 'unsupported_media_type', 'send the run as JSON with "Content-Type: application/json"');
    }
    const body = parseOr400(SubmitBody, req.body, 'request body');
    if (body.graph === undefined) throw new HttpError(400, 'bad_request', 'the body needs a "graph" field');
    const result = await submit(body.graph, body.client_id ?? null, { front: body.front === true });
    if (!result.ok && result.reason === 'queue_full') throw new HttpError(429, 'queue_full', result.message);
    if (!result.ok) throw new HttpError(400, 'invalid_graph', result.message, { issues: result.issues });
    res.status(202).location(`/api/runs/${result.run_id}`).json({ run_id: result.run_id, position: result.position });
  });

  // What POST /api/runs would say of this graph, without queueing it: the same validation and admission, every issue.
  router.post('/validate', async (req, res) => {
    if (req.body === undefined) {
      throw new HttpError(415, 'unsupported_media_type', 'send the graph as JSON with "Content-Type: application/json"');
    }
    const body = parseOr400(ValidateBody, req.body, 'request body');
    if (body.graph === undefined) throw new HttpError(400, 'bad_request', 'the body needs a "graph" field');
    res.json({ issues: await submit.check(body.graph) });
  });

  router.get('/runs', (req, res) => {
    const q = parseOr400(ListQuery, req.query, 'query');
    if (q.before !== undefined && !queue.summaryOf(q.before)) throw new HttpError(400, 'bad_request', `"before" names no run: ${q.before}`);
    const runs = queue.list(q.limit, q.before);
    const last = runs.at(-1);
    res.json({ runs, next_before: runs.length === q.limit && last ? last.id : null });
  });

  router.get('/runs/:id', (req, res) => {
    const run = queue.detail(req.params.id);
    if (!run) throw notFound(`run ${req.params.id}`);
    res.json(run);
  });

  router.post('/runs/:id/front', (req, res) => {
    const result = queue.moveToFront(req.params.id);
    if (result.outcome === 'not_found') throw notFound(`run ${req.params.id}`);
    if (result.outcome === 'not_queued') {
      throw new HttpError(409, 'not_queued', `run ${req.params.id} is not queued (${result.run.status})`, { run: result.run });
    }
    res.json(result.run);
  });

  router.delete('/runs/:id', (req, res) => {
    const result = queue.cancel(req.params.id);
    switch (result.outcome) {
      case 'not_found':
        throw notFound(`run ${req.params.id}`);
      case 'finished':
        throw new HttpError(409, 'run_finished', `run ${req.params.id} already finished (${result.run.status})`, { run: result.run });
      case 'cancelled':
        res.json(result.run);
        return;
      case 'cancelling':
        // The engine stops within one sampling step; the 'cancelled' event and GET tell when.
        res.status(202).json(result.run);
        return;
    }
  });

  return router;
}
