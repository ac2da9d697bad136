import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { RunningServer } from '../../server/http/start.js';
import { bundledGraph, REPO_ROOT } from '../helpers/graphs.js';
import { makeSandbox, startIn, type Sandbox } from '../server/helpers.js';

const run = promisify(execFile);

/** A consumer without tsx: plain Node, plain JavaScript, only `fusegraph/client` (the dist/ build). */
const CONSUMER = `
import { connect, RunCancelledError } from 'fusegraph/client';
const graph = JSON.parse(process.env.GRAPH);
const client = await connect(process.env.SERVER);
await client.pause();
const doomed = client.run(graph);
await doomed.accepted;
await doomed.cancel();
const cancelled = await doomed.done.then(() => false, (e) => e instanceof RunCancelledError);
await client.resume();
const handle = client.run(graph, { inlineOutputs: true });
const images = await handle.images();
await client.close();
console.log(JSON.stringify({ cancelled, images: images.map((i) => [i.node, i.bytes.length]) }));
`;

describe('fusegraph/client as a package (npm run build:sdk)', () => {
  let sandbox: Sandbox;
  let server: RunningServer;

  before(async () => {
    await run(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'sdk/tsconfig.build.json'], {
      cwd: REPO_ROOT, timeout: 300_000,
    });
    sandbox = await makeSandbox();
    server = await startIn(sandbox, { modelsRoot: path.join(REPO_ROOT, 'models') });
  });

  after(async () => {
    await server?.close();
    await sandbox?.remove();
  });

  it('renders the demo fusion and cancels a run from plain JavaScript without tsx', async () => {
    const graph = bundledGraph('demo-fusion');
    for (const node of Object.values(graph.nodes)) if (node.type === 'DDIMStep') node.params = { ...node.params, steps: 4 };
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', CONSUMER], {
      cwd: REPO_ROOT, timeout: 120_000, env: { ...process.env, SERVER: server.url, GRAPH: JSON.stringify(graph) },
    });
    const result = JSON.parse(stdout) as { cancelled: boolean; images: [string, number][] };
    assert.equal(result.cancelled, true);
    assert.deepEqual(result.images.map(([node]) => node).sort(), ['save_expert', 'save_fused', 'save_general']);
    assert.ok(result.images.every(([, bytes]) => bytes > 100));
  });
});
