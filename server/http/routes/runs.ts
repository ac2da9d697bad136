import { Router } from 'express';
import { z } from 'zod';
import type { Graph, GraphIssue } from '../../../nodes/graph-format.js';
import { validateGraph } from '../../engine/validate.js';
import { HttpError, notFound } from '../http-error.js';
import { QueueLimitError, type RunQueue } from '../../services/run-queue.js';
import { ClientIdSchema } from '../../../nodes/protocol.js';

const SubmitBody = z.strictObject({
  graph: z.unknown(),
  client_id: ClientIdSchema.optional(),
  /** Queue ahead of every queued run. */
  front: z.boolean().optional(),
});

const ListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  before: z.string().min(1).max(100).optional(),
});

function parseOr400<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new HttpError(400, 'bad_request', `invalid ${what}: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

function refuse(issues: readonly GraphIssue[]): HttpError {
  const n = issues.length;
  return new HttpError(400, 'invalid_graph', `the graph has ${n} issue${n === 1 ? '' : 's'}; nothing was queued`, { issues });
}

export function runsRoutes(queue: RunQueue, admit: (graph: Graph) => Promise<GraphIssue[]>): Router {
  const router = Router();

  router.post('/runs', async (req, res) => {
    if (req.body === undefined) {
      throw new HttpError(415, 'unsupported_media_type', 'send the run as JSON with "Content-Type: application/json"');
    }
    const body = parseOr400(SubmitBody, req.body, 'request body');
    if (body.graph === undefined) throw new HttpError(400, 'bad_request', 'the body needs a "graph" field');
    // Nothing is queued unless the whole graph is valid; every issue comes back at once (ComfyUI A7.4).
    const validated = validateGraph(body.graph);
    if (validated.issues.length > 0 || validated.graph === null) throw refuse(validated.issues);
    const admission = await admit(validated.graph);
    if (admission.length) throw refuse(admission);
    let queued;
    try {
      queued = queue.submit(validated.graph, body.client_id ?? null, { front: body.front === true });
    } catch (err) {
      if (err instanceof QueueLimitError) throw new HttpError(429, 'queue_full', err.message);
      throw err;
    }
    res.status(202).location(`/api/runs/${queued.run_id}`).json(queued);
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
