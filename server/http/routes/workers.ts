import { Router } from 'express';
import type { WorkerInfo } from '../../../nodes/protocol.js';

/** Scale-out workers and what they serve; without --redis the server executes runs itself and lists none. */
export function workersRoutes(listWorkers: (() => Promise<WorkerInfo[]>) | undefined): Router {
  const router = Router();
  router.get('/workers', async (_req, res) => {
    res.json({ mode: listWorkers ? 'redis' : 'local', workers: listWorkers ? await listWorkers() : [] });
  });
  return router;
}
