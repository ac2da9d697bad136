import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Graph } from '../../nodes/graph-format.js';
import { REPO_ROOT, txt2imgGraph } from '../helpers/graphs.js';
import { api, isTerminal, makeSandbox, serveProcess, WsClient, type Sandbox } from './helpers.js';

/**
 * The server runs in its own process with its private memory capped at 1 GiB (RLIMIT_DATA: an allocation beyond it
 * fails at once, so the machine's OOM killer never gets involved and the test is as fast on a 2-core box as in CI);
 * its session processes inherit the same cap, each for itself. Admission is told to let everything in
 * (--max-run-memory 1 PiB), so the runs really try to allocate. At this limit the 1024² UNet call fails midway (in an
 * InstanceNormalization), after which a later call in the same session worker crashed it (SIGSEGV) before SessionHost
 * replaced workers whose call ran out of memory. A 4096² decode of two images (192 MiB per image, 384 MiB for the
 * batch) runs out wherever it happens to: in the session process (onnxruntime-node's output copy, a V8 fatal error
 * that ends the process; serialising the answer) or in the server receiving it. Each of these once ended the whole
 * server: the copy with sessions in a worker thread, the receipt as an uncaught error inside Node's IPC (before large
 * answers came in slices).
 */
const LIMIT = 2 ** 30;

const demo = (width: number, batch = 1): Graph => {
  const g = txt2imgGraph('demo/general', { steps: 2 });
  g.nodes.noise!.params = { seed: 1, width, height: width, batch };
  return g;
};

interface RunBody { status: string; error: { code?: string; node: string | null; node_type?: string; message: string } | null }

describe('a run that runs out of memory fails cleanly and the server lives (issue 14)', () => {
  let sandbox: Sandbox;
  let server: { url: string; child: ChildProcess; exited: Promise<unknown> };
  let ws: WsClient;
  before(async () => {
    sandbox = await makeSandbox();
    server = await serveProcess(sandbox, {
      modelsRoot: path.join(REPO_ROOT, 'models'),
      dataLimit: LIMIT,
      args: ['--max-run-memory', String(2 ** 50), '--threads', '1'],
    });
    ws = await WsClient.connect(server.url, '?client_id=oom');
  });
  after(async () => {
    await ws?.close();
    server?.child.kill('SIGKILL');
    await server?.exited;
    await sandbox?.remove();
  });

  const run = async (graph: Graph): Promise<RunBody> => {
    const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph, client_id: 'oom' } });
    assert.equal(post.status, 202, JSON.stringify(post.body));
    await ws.waitFor(isTerminal(post.body.run_id), 120_000, `the end of run ${post.body.run_id}`);
    const res = await api<RunBody>(server.url, `/api/runs/${post.body.run_id}`);
    assert.equal(res.status, 200);
    return res.body;
  };

  it('a latent JavaScript cannot allocate (4096² × 64 images) fails at NoiseLatent with "out of memory"', async () => {
    const r = await run(demo(4096, 64));
    assert.equal(r.status, 'error');
    assert.equal(r.error?.node, 'noise');
    assert.equal(r.error?.code, 'out_of_memory');
    assert.match(r.error!.message, /^out of memory at node "noise" \(NoiseLatent\)/);
  });

  it('a UNet call ONNX Runtime cannot allocate (1024²) fails at PredictNoise with "out of memory"', async () => {
    const r = await run(demo(1024));
    assert.equal(r.status, 'error');
    assert.equal(r.error?.node, 'eps');
    // ONNX Runtime's arena says the size it could not get; a bad_alloc elsewhere in it does not.
    assert.match(r.error!.message, /^out of memory at node "eps" \(PredictNoise\)( \(\d+(\.\d)? [MG]iB more could not be allocated\))?: /);
    assert.doesNotMatch(r.error!.message, /bfc_arena|onnxruntime/, 'ONNX Runtime internals stay in the server log');
  });

  it('a decode of two 4096² images (192 MiB answers) fails at Decode with "out of memory"', async () => {
    const g = demo(4096, 2);
    for (const id of ['pos', 'neg', 'eps', 'sample']) delete g.nodes[id];
    g.nodes.decode!.inputs = { model: { node: 'model', output: 'model' }, latent: { node: 'noise', output: 'latent' } };
    const r = await run(g);
    assert.equal(r.status, 'error');
    assert.equal(r.error?.node, 'decode');
    assert.match(r.error!.message, /^out of memory at node "decode" \(Decode\)/);
  });

  it('then a small run on the same server succeeds, twice (the UNet worker was replaced, not left broken)', async () => {
    for (let i = 0; i < 2; i++) {
      const r = await run(demo(32));
      assert.equal(r.status, 'done', JSON.stringify(r.error));
    }
    assert.equal(server.child.exitCode, null, 'the server process is still up');
    assert.equal(server.child.signalCode, null);
  });
});
