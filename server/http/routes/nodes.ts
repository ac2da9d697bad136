import { Router } from 'express';
import { NODE_DEFS } from '../../../nodes/index.js';

/** Version of this listing's shape, so an editor can refuse a server it does not understand. */
export const NODES_API_VERSION = 1;

export function nodesRoutes(): Router {
  const router = Router();
  const body = { version: NODES_API_VERSION, nodes: NODE_DEFS };
  router.get('/nodes', (_req, res) => {
    res.json(body);
  });
  return router;
}
