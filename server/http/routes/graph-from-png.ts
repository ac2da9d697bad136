import express, { Router } from 'express';
import { validateGraph } from '../../engine/validate.js';
import { JsonLimitError } from '../../../nodes/json-limits.js';
import { isPng, PngCrcError, readGraphFromPng } from '../../sd/png-meta.js';
import { HttpError } from '../http-error.js';

/** Dropping an output PNG on the editor gives back the graph that made it; the server parses it so clients need no PNG code. */
export function graphFromPngRoutes(limit: string): Router {
  const router = Router();
  router.post('/graph-from-png', express.raw({ type: 'image/png', limit }), (req, res) => {
    const body: unknown = req.body;
    if (!Buffer.isBuffer(body) || body.length === 0) {
      throw new HttpError(415, 'unsupported_media_type', 'send the PNG bytes as the body with "Content-Type: image/png"');
    }
    if (!isPng(body)) {
      throw new HttpError(400, 'not_png', 'the body is not a PNG file');
    }
    let graph: ReturnType<typeof readGraphFromPng>;
    try {
      graph = readGraphFromPng(body);
    } catch (err) {
      // A damaged chunk, or a graph text over the JSON limits (depth, length), is refused naming what is wrong (issue 27).
      if (err instanceof PngCrcError) throw new HttpError(400, 'bad_png', err.message);
      if (err instanceof JsonLimitError) {
        throw err.limit === 'depth' ? new HttpError(400, 'json_too_deep', err.message) : new HttpError(413, 'body_too_large', err.message);
      }
      throw new HttpError(422, 'no_graph', `the PNG could not be read: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (graph === null) throw new HttpError(422, 'no_graph', 'the PNG carries no FuseGraph graph');
    // The graph may predate today's nodes or models; the editor shows these issues instead of refusing the file.
    res.json({ graph, issues: validateGraph(graph).issues });
  });
  return router;
}
