import { Router } from 'express';
import { NODE_DEFS } from '../../../nodes/index.js';
import { NODES_API_VERSION } from '../../../nodes/protocol.js';

export function nodesRoutes(): Router {
  const router = Router();
  const body = { version: NODES_API_VERSION, nodes: NODE_DEFS };
  router.get('/nodes', (_req, res) => {
    res.json(body);
  });
  return router;
}
