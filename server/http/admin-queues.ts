import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import { Router, type RequestHandler } from 'express';
import { requestHasToken, requireSameOrigin, sameSecret } from './auth.js';
import { HttpError } from './http-error.js';

/** Where the BullMQ dashboard is mounted (scale-out mode only). */
export const ADMIN_QUEUES_PATH = '/admin/queues';

const COOKIE = 'fusegraph_admin';

/** The cookie's value: derived from the token, so a leaked cookie opens the (read-only) dashboard but not the API. */
function cookieValue(token: string): string {
  return createHash('sha256').update(`fusegraph admin queues\0${token}`).digest('hex');
}

function cookieOf(req: IncomingMessage): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [name, ...rest] = part.trim().split('=');
    if (name === COOKIE) return rest.join('=');
  }
  return undefined;
}

/**
 * The API's token, as for /api (header, or `?token=` on GET). The dashboard's page then loads its data with
 * requests that carry no token, so a token accepted here also sets an HttpOnly, SameSite=Strict cookie scoped to
 * the dashboard that those requests carry.
 */
function requireAdminToken(token: string | undefined): RequestHandler {
  return (req, res, next) => {
    if (token === undefined) {
      next();
      return;
    }
    const cookie = cookieOf(req);
    if (cookie !== undefined && sameSecret(cookie, cookieValue(token))) {
      next();
      return;
    }
    if (requestHasToken(req, token, req.method === 'GET' || req.method === 'HEAD')) {
      res.setHeader('Set-Cookie', `${COOKIE}=${cookieValue(token)}; Path=${ADMIN_QUEUES_PATH}; HttpOnly; SameSite=Strict${req.secure ? '; Secure' : ''}`);
      next();
      return;
    }
    next(new HttpError(401, 'unauthorized', 'missing or wrong token: send "Authorization: Bearer <token>" or open the page with ?token=<token>'));
  };
}

/**
 * bull-board over the run queues (one per model set), behind the API's token and origin checks. Read-only: the
 * run queue in SQLite is the source of truth for runs, and a job retried, removed or added behind its back would
 * leave the two disagreeing; cancel runs through the API instead.
 */
export function adminQueues(token: string | undefined, queues: readonly Queue[]): { router: Router; add: (queue: Queue) => void } {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(ADMIN_QUEUES_PATH);
  const adapt = (queue: Queue): BullMQAdapter => new BullMQAdapter(queue, { readOnlyMode: true });
  const board = createBullBoard({ queues: queues.map(adapt), serverAdapter, options: { uiConfig: { boardTitle: 'FuseGraph run queues' } } });
  const router = Router();
  router.use(requireSameOrigin(token), requireAdminToken(token), serverAdapter.getRouter() as Router);
  return { router, add: (queue) => board.addQueue(adapt(queue)) };
}
