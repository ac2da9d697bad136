import { existsSync } from 'node:fs';
import { join } from 'node:path';
import express, { Router } from 'express';

const PLACEHOLDER = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>FuseGraph server</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}code{background:#eee;padding:0 .25em}</style>
<h1>FuseGraph server is running</h1>
<p>The editor is not built, so there is nothing to show here yet. Build it into <code>dist/client</code>
(or start the server with another client folder) and reload.</p>
<p>The API works without it: <a href="/api/nodes">/api/nodes</a>, <a href="/api/models">/api/models</a>,
<a href="/api/queue">/api/queue</a>; see <code>docs/api.md</code>.</p>
</html>
`;

/** Serves the built editor, or a page that says how to get one, so `/` never answers with a bare 404. */
export function clientRoutes(clientDir: string): Router {
  const router = Router();
  if (existsSync(join(clientDir, 'index.html'))) {
    router.use(express.static(clientDir, { index: 'index.html', dotfiles: 'ignore' }));
  } else {
    router.get('/', (_req, res) => {
      res.type('html').send(PLACEHOLDER);
    });
  }
  return router;
}
