import { Router } from 'express';
import type { RunQueue } from '../../services/run-queue.js';

export function queueRoutes(queue: RunQueue): Router {
  const router = Router();
  router.get('/queue', (_req, res) => {
    res.json(queue.state());
  });
  // Pausing lets the running runs finish and keeps the flag across restarts (ComfyUI #1032).
  router.post('/queue/pause', (_req, res) => {
    res.json(queue.pause());
  });
  router.post('/queue/resume', (_req, res) => {
    res.json(queue.resume());
  });
  // Cancels every queued run; running runs go on (cancel those one by one).
  router.post('/queue/clear', (_req, res) => {
    res.json({ cancelled: queue.clearQueued() });
  });
  return router;
}
