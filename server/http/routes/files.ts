import { Router, type RequestHandler } from 'express';
import { checkFileName, fileInRoot } from '../safe-name.js';

function serve(root: string, extension: string, contentType: string): RequestHandler<{ name: string }> {
  return async (req, res) => {
    const { name } = req.params;
    checkFileName(name, extension);
    const path = await fileInRoot(root, name);
    // Names can be reused (SaveLatent overwrites, outputs can be deleted), so revalidate rather than cache blindly.
    res.setHeader('Cache-Control', 'no-cache');
    res.type(contentType);
    await new Promise<void>((resolve, reject) => {
      // Once bytes are on their way, a failure means the client went away: nothing left to answer.
      res.sendFile(path, { dotfiles: 'deny' }, (err) => (err && !res.headersSent ? reject(err) : resolve()));
    });
  };
}

/** Outputs of runs, straight from the output root; a run's output URLs point here. */
export function filesRoutes(outputRoot: string): Router {
  const router = Router();
  router.get('/images/:name', serve(outputRoot, '.png', 'image/png'));
  router.get('/latents/:name', serve(outputRoot, '.npy', 'application/octet-stream'));
  return router;
}
