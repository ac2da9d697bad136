import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { RunningServer } from '../../server/http/start.js';
import { bundledGraph, REPO_ROOT } from '../helpers/graphs.js';
import { makeSandbox, startIn, type Sandbox } from '../server/helpers.js';

const run = promisify(execFile);

/** A consumer without tsx, in a project of its own: plain Node, plain JavaScript, only `fusegraph/client` (the dist/ build). */
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

/** A TypeScript consumer: it must type-check against the package's declarations alone, and fail on a misuse. */
const TS_CONSUMER = `
import { connect, type RunHandle } from 'fusegraph/client';
export async function render(url: string, graph: unknown): Promise<number> {
  const client = await connect(url);
  const handle: RunHandle = client.run(graph as never, { inlineOutputs: true });
  const images = await handle.images();
  await client.close();
  return images.length;
}
`;
const TSC = path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const TS_OPTIONS = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--skipLibCheck', 'false'];

describe('fusegraph/client as a package (npm run build:sdk), used from another project', () => {
  let sandbox: Sandbox;
  let server: RunningServer;
  let project: string;

  before(async () => {
    await run(process.execPath, [TSC, '-p', 'sdk/tsconfig.build.json'], { cwd: REPO_ROOT, timeout: 300_000 });
    // What `npm install /path/to/fusegraph` makes: a link under node_modules; Node and tsc follow it.
    project = await fs.mkdtemp(path.join(os.tmpdir(), 'fusegraph-consumer-'));
    await fs.mkdir(path.join(project, 'node_modules'));
    await fs.symlink(REPO_ROOT, path.join(project, 'node_modules', 'fusegraph'), 'dir');
    await fs.writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', type: 'module', private: true }));
    sandbox = await makeSandbox();
    server = await startIn(sandbox, { modelsRoot: path.join(REPO_ROOT, 'models') });
  });

  after(async () => {
    await server?.close();
    await sandbox?.remove();
    if (project) await fs.rm(project, { recursive: true, force: true });
  });

  it('type-checks a TypeScript consumer against the declarations, and refuses a misuse', async () => {
    await fs.writeFile(path.join(project, 'render.ts'), TS_CONSUMER);
    await run(process.execPath, [TSC, ...TS_OPTIONS, 'render.ts'], { cwd: project, timeout: 120_000 });
    await fs.writeFile(path.join(project, 'misuse.ts'), `import { connect } from 'fusegraph/client';\nawait connect(42);\n`);
    const refused = await run(process.execPath, [TSC, ...TS_OPTIONS, 'misuse.ts'], { cwd: project, timeout: 120_000 }).then(
      () => '', (e: { stdout?: string }) => e.stdout ?? '');
    assert.match(refused, /misuse\.ts.*TS2345/);
  });

  it('renders the demo fusion and cancels a run from plain JavaScript without tsx', async () => {
    const graph = bundledGraph('demo-fusion');
    for (const node of Object.values(graph.nodes)) if (node.type === 'DDIMStep') node.params = { ...node.params, steps: 4 };
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', CONSUMER], {
      cwd: project, timeout: 120_000, env: { ...process.env, SERVER: server.url, GRAPH: JSON.stringify(graph) },
    });
    const result = JSON.parse(stdout) as { cancelled: boolean; images: [string, number][] };
    assert.equal(result.cancelled, true);
    assert.deepEqual(result.images.map(([node]) => node).sort(), ['save_expert', 'save_fused', 'save_general']);
    assert.ok(result.images.every(([, bytes]) => bytes > 100));
  });
});
