import { Router } from 'express';

export function modelsRoutes(listModels: () => Promise<unknown[]>): Router {
  const router = Router();
  router.get('/models', async (_req, res) => {
    res.json({ models: await listModels() });
  });
  return router;
}
