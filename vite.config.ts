import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

// `npm run dev:client` proxies the API to a running `fusegraph serve`; FUSEGRAPH_API points elsewhere.
const api = process.env.FUSEGRAPH_API ?? 'http://127.0.0.1:8188';

export default defineConfig({
  root: here('./client'),
  base: './',
  plugins: [react()],
  resolve: {
    // elkjs's main entry probes for Node's worker threads with require.resolve, which a browser bundle cannot do;
    // the bundled build runs the layout in-page.
    alias: [{ find: /^elkjs$/, replacement: 'elkjs/lib/elk.bundled.js' }],
  },
  build: {
    outDir: here('./dist/client'),
    emptyOutDir: true,
    sourcemap: true,
    chunkSizeWarningLimit: 2500,
  },
  server: {
    proxy: {
      // client/api/*.ts is source served by Vite itself; everything else under /api is the server's.
      '^/api/(?![\\w./-]+\\.tsx?(?:\\?|$))': api,
      '/ws': { target: api.replace(/^http/, 'ws'), ws: true },
    },
  },
});
