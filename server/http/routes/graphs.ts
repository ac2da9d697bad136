import { readdir, readFile } from 'node:fs/promises';
import { Router } from 'express';
import { parseJsonLimited } from '../../../nodes/json-limits.js';
import { HttpError } from '../http-error.js';
import { checkFileName, fileInRoot } from '../safe-name.js';

interface GraphListing {
  readonly name: string;
  readonly meta: { readonly name?: string; readonly description?: string };
  readonly nodes: number;
}

async function readJson(path: string): Promise<unknown> {
  return parseJsonLimited(await readFile(path, 'utf8'), { what: 'the graph file' });
}

function describe(name: string, value: unknown): GraphListing {
  const g = (typeof value === 'object' && value !== null ? value : {}) as { meta?: unknown; nodes?: unknown };
  const meta = typeof g.meta === 'object' && g.meta !== null ? (g.meta as GraphListing['meta']) : {};
  const nodes = typeof g.nodes === 'object' && g.nodes !== null ? Object.keys(g.nodes).length : 0;
  return { name, meta: { name: meta.name, description: meta.description }, nodes };
}

/** The example graphs shipped in graphs/, for the editor's "open example" list. */
export function graphsRoutes(graphsDir: string, log: (message: string, err?: unknown) => void): Router {
  const router = Router();

  router.get('/graphs', async (_req, res) => {
    const files = await readdir(graphsDir).catch(() => [] as string[]);
    const graphs: GraphListing[] = [];
    for (const file of files.filter((f) => f.endsWith('.json')).sort()) {
      try {
        // fileInRoot: a symlink that leads out of graphs/ is not listed (its 404 is caught here).
        graphs.push(describe(file.slice(0, -'.json'.length), await readJson(await fileInRoot(graphsDir, file))));
      } catch (err) {
        log(`bundled graph ${file} is unreadable; not listing it`, err);
      }
    }
    res.json({ graphs });
  });

  router.get('/graphs/:name', async (req, res) => {
    const file = `${req.params.name}.json`;
    checkFileName(file, '.json');
    const path = await fileInRoot(graphsDir, file);
    try {
      res.json(await readJson(path));
    } catch {
      throw new HttpError(500, 'bad_bundled_graph', `bundled graph ${req.params.name} is not valid JSON`);
    }
  });

  return router;
}
