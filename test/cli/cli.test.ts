import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import sharp from 'sharp';
import type { Graph } from '../../nodes/graph-format.js';
import { NODE_DEFS, SAMPLER_NAMES } from '../../nodes/index.js';
import { inspectModelFolder } from '../../server/sd/model-folder.js';
import { readPngText } from '../../server/sd/png-meta.js';
import { writeTinyModel } from '../../tools/tiny-models/make-tiny-model.js';
import { REPO_ROOT, TOKENIZER_FIXTURE, bundledGraph, txt2imgGraph } from '../helpers/graphs.js';
import type { TinyWorkspace } from '../helpers/tiny-models.js';
import { tinyWorkspace } from '../helpers/tiny-models.js';

const run = promisify(execFile);

/** NumPy: np.save(np.random.RandomState(0).standard_normal((1,4,8,8)).astype(np.float32)) */
const NUMPY_SEED0_F32 = Buffer.from('k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDEsIDQsIDgsIDgpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAp4zOE/aOHMPpOOej/Lag9AJAzvP+Iuer//OHM/Yv0avmhk0734OdI+KIATPqIluj9e00I/wDD5PQtC4z5d16o+/D2/PwIVUr5pSqA+BaZavy9kI8CMUyc/sUtdP4f+Pb+pQxFAqCi6v0htOz0grT++HDLEP/MTvD+Kqh4+hZ7BPu1FY7+9iv2/iyGyvvIZID4qep0/leeZP7NPxr5tx5q+/DaGvybDtb8QZ9q/ArP5P5F4Ar9GS+C+mVugv5wJRz80lM6/l9hZvkw9Zb8WGMY+IMQCv/Uel79r3ua8UU7bPi46iD2Z3Zo+72Iivza5ub5eJiy/Whe4vlsqUL/U9ty/M681Pju2zb5XqtC/zPHsPrVEaL+yxFQ9rqU6PxkUBD7i15E/xg6ev7n/zT63Ty+/kOxev34vFL/Qg5++oQ1mPaEjlb+RnGY/T2vuPqKjxL8Mf74/f6zyP0Dilj83Pji+bA6Jv0b4hj81bc6+FHmcPwlGVT4EBXo/qHW2PvvhND9HCCw8aJfkPz71AT6N0c0+FQvxP16DrL9Bn6K/Yip4P+golr+UyPg/3sXTvjNZP7/3IvY/goG9PywM7z+L8mc/SXlcvwJ99D+9N4m+yG1NPxt/cj/3uh6+TjQdP70VbD/ZusA+KrmMv62ymD4Dx6k/M88xv8w5Gb5yzN6+rbTsP4IbLD/WntA+OBlFvzwMCj8RoSy/wmACPc/GIr+7Ki0/dZsTP0VMVb5kwco+cemLv4fhvr/z9+A+dawqPmyRIj9yhRhAaMlxP7iuab9k+o4/p2+ov9FU7L5Bwou90E7bP0GoPr96kVO/eqHJvbfZKb+bNZA/MjuKv0Hgkr/zKeC+HP7+vuj69j8+DXM/EU6zPRLbnL8sKFg/DgeAvw+7xb9cEZg/TUaiPme9az9FMKM+QFlbP52pJr8SYoS/+nwuP0GsTb9WhjC/jjvpvnQwjzyxPrW+Z/6vvy3EJL89TA7AKw8gPzoQzb9vXI2/DatVPQBUPb+BgcU/Vnylv+S6iD4F5yC9FoSVv3b1BT/XqS++EZRFPyvRUj91cgpAWROrP2cFvb7RH3W+pcGMP12/Jz+p3yM/avjOv5VHx7yY7zy/R1KPPhIDyb18AWk/bWqiPspMST98zu6+O8dxvwny0b5lbou8LSDCPoWYEEDWFS290Lh0v4Yksb50XO2+vYT2PtY4xb+Bj4E9QEMgPt7AbT616Ri/waFzvqFHtr9slPy++PgKv4ME1T7J/ZO/mfxHP0VLvz+iegTAlj7aPthJLT8TLyO/NmfLvtkRCL4MeJi+8zaevkuH1r+af5M/8TCKP6Q4UL/Ls7u/gmQFP9dmE78sXBE+BH+jvq8IMT8U2zE/', 'base64');
/** NumPy: np.save(np.arange(24, dtype=np.float64).reshape(2,3,2,2) / 7) */
const NUMPY_F64 = Buffer.from('k05VTVBZAQB2AHsnZGVzY3InOiAnPGY4JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDMsIDIsIDIpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAAAAAJIkSZIkScI/kiRJkiRJ0j/btm3btm3bP5IkSZIkSeI/t23btm3b5j/btm3btm3rPwAAAAAAAPA/kiRJkiRJ8j8lSZIkSZL0P7dt27Zt2/Y/SZIkSZIk+T/btm3btm37P27btm3btv0/AAAAAAAAAEBJkiRJkiQBQJIkSZIkSQJA27Zt27ZtA0AlSZIkSZIEQG7btm3btgVAt23btm3bBkAAAAAAAAAIQEmSJEmSJAlAkiRJkiRJCkA=', 'base64');

async function cli(args: string[], cwd: string, timeout = 0): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(REPO_ROOT, 'bin', 'fusegraph.js'), ...args], { cwd, timeout, env: { ...process.env, FUSEGRAPH_NO_WEBGPU: '1' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function latentGraph(): Graph {
  return {
    format: 'fusegraph', version: 2,
    nodes: {
      model: { type: 'LoadModel', params: { path: 'general', provider: 'cpu' } },
      noise: { type: 'NoiseLatent', params: { seed: 0, width: 64, height: 64 }, inputs: { model: { node: 'model', output: 'model' } } },
      save: { type: 'SaveLatent', params: { filename: 'x.npy' }, inputs: { latent: { node: 'noise', output: 'latent' } } },
    },
  };
}

/** txt2img on the committed demo model (pixel space: VAE factor 1), as test/server/admission.test.ts submits it. */
function demoGraph(size: number): Graph {
  const g = txt2imgGraph('demo/general', { steps: 2 });
  g.nodes.noise!.params = { seed: 1, width: size, height: size, batch: 1 };
  return g;
}

describe('fusegraph CLI', () => {
  let ws: TinyWorkspace;
  before(async () => {
    ws = await tinyWorkspace({ general: { seed: 1 }, cartoon: { seed: 2 } });
    await mkdir(ws.input, { recursive: true });
  });
  after(() => ws.cleanup());

  it('nodes prints every definition', async () => {
    const r = await cli(['nodes'], ws.root);
    assert.equal(r.code, 0);
    const parsed = JSON.parse(r.stdout) as { version: number; nodes: { type: string }[] };
    assert.deepEqual(parsed.nodes.map((n) => n.type), NODE_DEFS.map((d) => d.type));
  });

  it('validate exits non-zero and prints every problem', async () => {
    const g = bundledGraph('txt2img');
    g.nodes.sample!.params = { steps: 0 };
    g.nodes.eps!.inputs!.latent = { node: 'noise', output: 'latent' };
    const file = path.join(ws.root, 'bad.json');
    await writeFile(file, JSON.stringify(g));
    const r = await cli(['validate', file], ws.root);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /2 problems/);
    assert.match(r.stderr, /node "sample", field "params.steps"/);
    assert.match(r.stderr, /node "eps", field "inputs.latent"/);
    const ok = await cli([
      'validate', path.join(REPO_ROOT, 'graphs', 'magicfusion-cross-domain.json'), '--models', ws.models,
      '--set', 'base_model.path=general', '--set', 'other_model.path=cartoon', '--set', 'noise.width=64', '--set', 'noise.height=64',
    ], ws.root);
    assert.equal(ok.code, 0, ok.stderr);
  });

  it('validate makes run\'s checks: a missing model folder and a size the UNet cannot take, with the lines run refuses them with', async () => {
    const models = path.join(REPO_ROOT, 'models');
    const issueLines = (text: string): string[] => text.split('\n').filter((l) => l.startsWith('  - '));
    for (const [what, graph, field] of [
      ['missing folder', txt2imgGraph('demo/nowhere', { steps: 2, size: 32 }), 'node "model", field "params.path"'],
      ['width 33', demoGraph(33), 'node "noise", field "params.'],
    ] as const) {
      const file = path.join(ws.root, `refused-${what.replace(' ', '-')}.json`);
      await writeFile(file, JSON.stringify(graph));
      const validate = await cli(['validate', file, '--models', models], ws.root);
      assert.equal(validate.code, 1, `${what}: ${validate.stdout}`);
      const run = await cli(['run', file, '--models', models, '--out', path.join(ws.root, 'out-refused')], ws.root);
      assert.equal(run.code, 1, what);
      assert.ok(issueLines(validate.stderr).length > 0 && issueLines(validate.stderr).every((l) => l.includes(field)), validate.stderr);
      assert.deepEqual(issueLines(validate.stderr), issueLines(run.stderr), what);
      assert.doesNotMatch(run.stderr, /UNet calls/, `${what}: no model loaded`);
    }
  });

  it('runs the cross-domain graph with --set and writes three PNGs carrying the graph', async () => {
    const out = path.join(ws.root, 'out-cd');
    const r = await cli([
      'run', path.join(REPO_ROOT, 'graphs', 'magicfusion-cross-domain.json'), '--models', ws.models, '--out', out,
      '--set', 'base_model.path=general', '--set', 'other_model.path=cartoon', '--set', 'noise.width=64', '--set', 'noise.height=64',
      '--set', 'sample_fused.steps=10', '--set', 'sample_base.steps=10', '--set', 'sample_other.steps=10',
    ], ws.root);
    assert.equal(r.code, 0, r.stderr);
    const files = r.stdout.trim().split('\n');
    assert.equal(files.length, 3);
    assert.deepEqual((await readdir(out)).sort(), ['expert_00001.png', 'fused_00001.png', 'general_00001.png']);
    assert.match(r.stderr, /sample_fused step 10\/10 t=1/);
    const meta = JSON.parse(readPngText(await readFile(path.join(out, 'fused_00001.png'))).get('fusegraph')!) as {
      graph: Graph; params: Record<string, Record<string, unknown>>; models: { folder: string; sha256: Record<string, string> }[];
    };
    assert.equal(meta.graph.nodes.base_model!.params!.path, 'general');
    assert.equal(meta.params.sample_fused!.steps, 10);
    assert.deepEqual(meta.models.map((m) => m.folder).sort(), ['cartoon', 'general']);
    assert.match(meta.models[0]!.sha256.unet!, /^[0-9a-f]{64}$/);

    // The PNG is a graph: running it again reproduces the same image.
    const again = path.join(ws.root, 'out-again');
    const r2 = await cli(['run', path.join(out, 'fused_00001.png'), '--models', ws.models, '--out', again], ws.root);
    assert.equal(r2.code, 0, r2.stderr);
    const a = await readFile(path.join(out, 'fused_00001.png'));
    const b = await readFile(path.join(again, 'fused_00001.png'));
    assert.equal(a.subarray(0, a.indexOf('iTXt')).toString('hex'), b.subarray(0, b.indexOf('iTXt')).toString('hex'));
    assert.doesNotMatch(r2.stderr, /warning/);

    // A model re-exported since: the re-run still works, and says which file is not the one that made the PNG.
    const changed = path.join(ws.root, 'models-changed');
    await cp(path.join(ws.models, 'general'), path.join(changed, 'general'), { recursive: true });
    await writeTinyModel(path.join(changed, 'cartoon'), { seed: 99 });
    const r3 = await cli(['run', path.join(out, 'fused_00001.png'), '--models', changed, '--out', path.join(ws.root, 'out-changed')], ws.root);
    assert.equal(r3.code, 0, r3.stderr);
    const warnings = r3.stderr.split('\n').filter((l) => l.startsWith('warning:'));
    assert.deepEqual(warnings.map((l) => /^warning: model (\S+): (\S+) is not the file that made this PNG/.exec(l)?.slice(1, 3).join(' ')).sort(), [
      'cartoon text_encoder/model.onnx',
      'cartoon unet/model.onnx',
      'cartoon vae_decoder/model.onnx',
    ]);
  });

  it('writes .npy latents byte-identical to NumPy and reads them back (float32 and float64)', async () => {
    const file = path.join(ws.root, 'latent.json');
    await writeFile(file, JSON.stringify(latentGraph()));
    const out = path.join(ws.root, 'out-npy');
    const r = await cli(['run', file, '--models', ws.models, '--out', out], ws.root);
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await readFile(path.join(out, 'x.npy'))).equals(NUMPY_SEED0_F32));

    await writeFile(path.join(ws.input, 'f64.npy'), NUMPY_F64);
    const roundTrip: Graph = {
      format: 'fusegraph', version: 2,
      nodes: {
        load: { type: 'LoadLatent', params: { path: 'f64.npy' } },
        save: { type: 'SaveLatent', params: { filename: 'back.npy' }, inputs: { latent: { node: 'load', output: 'latent' } } },
      },
    };
    await writeFile(file, JSON.stringify(roundTrip));
    const r2 = await cli(['run', file, '--input', ws.input, '--out', out], ws.root);
    assert.equal(r2.code, 0, r2.stderr);
    const back = await readFile(path.join(out, 'back.npy'));
    const data = new Float32Array(back.buffer.slice(back.byteOffset + 128, back.byteOffset + back.length));
    assert.equal(data.length, 24);
    for (let i = 0; i < 24; i++) assert.equal(data[i], Math.fround(i / 7));
    assert.match(back.subarray(0, 128).toString('latin1'), /'shape': \(2, 3, 2, 2\)/);
  });

  it('refuses paths that escape their roots and rejects bad .npy files clearly', async () => {
    const file = path.join(ws.root, 'escape.json');
    await writeFile(file, JSON.stringify(latentGraph()));
    const r = await cli(['run', file, '--models', ws.models, '--set', 'model.path=../../etc'], ws.root);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /node "model", field "params.path": path escapes the models root/);

    await writeFile(path.join(ws.input, 'bad.npy'), Buffer.from('not a numpy file at all'));
    await writeFile(file, JSON.stringify({
      format: 'fusegraph', version: 2,
      nodes: {
        load: { type: 'LoadLatent', params: { path: 'bad.npy' } },
        save: { type: 'SaveLatent', inputs: { latent: { node: 'load', output: 'latent' } } },
      },
    }));
    const r2 = await cli(['run', file, '--input', ws.input, '--out', path.join(ws.root, 'o')], ws.root);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /node "load" \(LoadLatent\), field "params.path"/);
    const r3 = await cli(['run', file, '--input', ws.input, '--set', 'load.path=../secret.npy'], ws.root);
    assert.equal(r3.code, 1);
    assert.match(r3.stderr, /path escapes the input root/);
  });

  it('--set rejects unknown nodes and malformed assignments', async () => {
    const g = path.join(REPO_ROOT, 'graphs', 'txt2img.json');
    assert.match((await cli(['validate', g, '--set', 'ghost.steps=3'], ws.root)).stderr, /no node "ghost"/);
    assert.match((await cli(['validate', g, '--set', 'sample'], ws.root)).stderr, /expected NODE.PARAM=VALUE/);
    const typed = await cli(['validate', g, '--set', 'sample.steps="ten"'], ws.root);
    assert.equal(typed.code, 1);
    assert.match(typed.stderr, /params.steps/);
  });

  it('tokenize and schedule print JSON', async () => {
    const t = await cli(['tokenize', TOKENIZER_FIXTURE, 'a photo of an astronaut riding a horse on mars'], ws.root);
    const ids = JSON.parse(t.stdout) as number[];
    assert.equal(ids.length, 77);
    assert.deepEqual(ids.slice(0, 13), [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407, 49407]);
    const s = await cli(['schedule', path.join(ws.models, 'general', 'scheduler', 'scheduler_config.json'), '--steps', '100'], ws.root);
    const sched = JSON.parse(s.stdout) as { timesteps: number[]; alphas_cumprod: number[]; prev_alphas_cumprod: number[] };
    assert.equal(sched.timesteps.length, 100);
    assert.equal(sched.timesteps[0], 991);
    assert.equal(sched.timesteps[99], 1);
    assert.ok(Math.abs(sched.prev_alphas_cumprod[99]! - 0.99915) < 1e-6);
  });
  it('runs the fast cross-domain graph (DPM++ 2M Karras) and the same graph with every other sampler', async () => {
    const graph = path.join(REPO_ROOT, 'graphs', 'magicfusion-cross-domain-fast.json');
    for (const sampler of SAMPLER_NAMES) {
      const sets = ['base_model.path=general', 'other_model.path=cartoon', 'noise.width=64', 'noise.height=64'];
      for (const node of ['sample_fused', 'sample_base', 'sample_other']) {
        sets.push(`${node}.steps=3`);
        if (sampler !== 'dpmpp_2m') sets.push(`${node}.sampler=${sampler}`, `${node}.schedule=${sampler === 'ddim' ? 'default' : 'karras'}`);
      }
      const out = path.join(ws.root, `out-fast-${sampler}`);
      const r = await cli(['run', graph, '--models', ws.models, '--out', out, ...sets.flatMap((s) => ['--set', s])], ws.root);
      assert.equal(r.code, 0, `${sampler}: ${r.stderr}`);
      assert.deepEqual((await readdir(out)).sort(), ['expert_00001.png', 'fused_00001.png', 'general_00001.png'], sampler);
    }
  });

  it('schedule --sampler/--schedule prints timesteps and sigmas per model call; default DDIM prints torch\'s ᾱ', async () => {
    const cfg = path.join(ws.models, 'general', 'scheduler', 'scheduler_config.json');
    const k = await cli(['schedule', cfg, '--steps', '5', '--sampler', 'dpmpp_2m', '--schedule', 'karras'], ws.root);
    assert.equal(k.code, 0, k.stderr);
    const r = JSON.parse(k.stdout) as { sampler: string; model_calls: number; timesteps: number[]; sigmas: number[]; init_noise_sigma: number };
    assert.equal(r.sampler, 'dpmpp_2m');
    assert.equal(r.model_calls, 5);
    assert.deepEqual([r.timesteps[0], r.timesteps[4]], [999, 0]);
    assert.equal(r.sigmas.length, 6);
    assert.equal(r.sigmas[0], 14.614645004272461); // torch: ((1 - ᾱ[999]) / ᾱ[999]) ** 0.5 in float32
    assert.equal(r.init_noise_sigma, 1);
    const heun = JSON.parse((await cli(['schedule', cfg, '--steps', '3', '--sampler', 'heun'], ws.root)).stdout) as { model_calls: number };
    assert.equal(heun.model_calls, 5);
    const ddim = JSON.parse((await cli(['schedule', cfg, '--steps', '10'], ws.root)).stdout) as { alphas_cumprod: number[] };
    assert.equal(ddim.alphas_cumprod[0], 0.01400489080697298); // torch 1.13: torch.cumprod(1 - torch.linspace(…) ** 2, 0)[901].item()
    const bad = await cli(['schedule', cfg, '--steps', '3', '--sampler', 'nope'], ws.root);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--sampler must be one of ddim, euler/);
  });

  describe('run checks the memory budget before loading any model, as serve does', () => {
    const demoModels = path.join(REPO_ROOT, 'models');
    const writeGraph = async (name: string, size: number): Promise<string> => {
      const file = path.join(ws.root, name);
      await writeFile(file, JSON.stringify(demoGraph(size)));
      return file;
    };
    /** Nothing ran: no model line, no node started, nothing written. */
    const assertNothingRan = async (r: { stdout: string; stderr: string }, out: string): Promise<void> => {
      assert.equal(r.stdout, '');
      assert.doesNotMatch(r.stderr, /▶|UNet calls|done in/);
      await assert.rejects(stat(out), { code: 'ENOENT' });
    };

    it('refuses a 4096×4096 demo graph under the default budget, naming node and field, without loading the model', async () => {
      // About 96 GiB by the config-based estimate: over half the free memory of any machine these tests run on. The
      // timeout only stops a run that was wrongly admitted.
      const file = await writeGraph('huge.json', 4096);
      const out = path.join(ws.root, 'out-huge');
      const started = performance.now();
      const r = await cli(['run', file, '--models', demoModels, '--out', out], ws.root, 60_000);
      const ms = performance.now() - started;
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^error: 1 problem in the graph:\n {2}- node "noise", field "params\.width": this latent .* needs about 96\.0 GiB at its peak, more than the per-run budget of .* \(--max-run-memory\).*\[too_large\]\n$/);
      assert.doesNotMatch(r.stderr, /as measured/);
      await assertNothingRan(r, out);
      assert.ok(ms < 15_000, `refused up front, took ${Math.round(ms)} ms`);

      // --max-run-memory sets the budget the message names (serve's 2.0 GiB test figure).
      const two = await cli(['run', file, '--models', demoModels, '--out', out, '--max-run-memory', String(2 * 2 ** 30)], ws.root, 60_000);
      assert.equal(two.code, 1, two.stderr);
      assert.match(two.stderr, /node "noise", field "params\.width": .*per-run budget of 2\.0 GiB \(--max-run-memory\).*\(expected ≤ 2\.0 GiB, got 96\.0 GiB\) \[too_large\]/);
    });

    it('runs a 32×32 demo graph under the default budget and refuses it under --max-run-memory 1000', async () => {
      const file = await writeGraph('small.json', 32);
      const out = path.join(ws.root, 'out-small');
      const ok = await cli(['run', file, '--models', demoModels, '--out', out], ws.root);
      assert.equal(ok.code, 0, ok.stderr);
      assert.deepEqual(await readdir(out), ['test_00001.png']);
      assert.match(ok.stderr, /: 2 UNet calls/);

      const tinyOut = path.join(ws.root, 'out-tiny-budget');
      const tiny = await cli(['run', file, '--models', demoModels, '--out', tinyOut, '--max-run-memory', '1000'], ws.root);
      assert.equal(tiny.code, 1, tiny.stderr);
      assert.match(tiny.stderr, /node "noise", field "params\.width": .*per-run budget of 1 KiB \(--max-run-memory\).*\[too_large\]/);
      await assertNothingRan(tiny, tinyOut);
    });

    it('--session-isolation thread writes the same image as the default session process; a bad value is refused', async () => {
      const file = await writeGraph('isolation.json', 32);
      const images: Buffer[] = [];
      for (const isolation of ['process', 'thread']) {
        const out = path.join(ws.root, `out-${isolation}`);
        const r = await cli(['run', file, '--models', demoModels, '--out', out, '--session-isolation', isolation], ws.root);
        assert.equal(r.code, 0, r.stderr);
        // The pixels: the PNG's text chunks carry this run's own record (times).
        images.push(await sharp(path.join(out, 'test_00001.png')).raw().toBuffer());
      }
      assert.ok(images[0]!.equals(images[1]!), 'the same pixels');
      for (const command of ['run', 'serve']) {
        const bad = await cli([command, file, '--session-isolation', 'fork'], ws.root);
        assert.equal(bad.code, 1);
        assert.match(bad.stderr, /--session-isolation must be one of process, thread/);
      }
    });

    it('rejects a bad --max-run-memory before reading the graph', async () => {
      const file = path.join(ws.root, 'no-such-graph.json');
      for (const [value, message] of [
        ['lots', /^\nerror: --max-run-memory must be a non-negative number\n$/],
        ['-5', /^\nerror: --max-run-memory must be a non-negative number\n$/],
        ['0', /^\nerror: maxRunMemory must be a positive number of bytes, got 0\n$/],
      ] as const) {
        const r = await cli(['run', file, '--models', demoModels, '--out', path.join(ws.root, 'out-bad'), `--max-run-memory=${value}`], ws.root);
        assert.equal(r.code, 1, value);
        assert.match(r.stderr, message, value);
      }
      assert.equal((await cli(['run', file, '--max-run-memory'], ws.root)).stderr.trim(), 'error: --max-run-memory needs a value');
      // An unknown flag last on the line is named as unknown (not "needs a value"), with the flags the command takes.
      const unknown = (await cli(['validate', file, '--verbose'], ws.root)).stderr.trim();
      assert.equal(unknown, 'error: unknown option: --verbose; it takes --set, --models, --max-run-memory, --data');
    });

    it('rejects a worker\'s bad numeric flags before it connects, naming the flag', async () => {
      // Nothing listens on port 1: a flag that got past the check would fail on the connection instead.
      for (const [flagName, value, rule] of [
        ['concurrency', '0', 'a positive integer'],
        ['threads', '1.5', 'a positive integer'],
        ['resident-grace-ms', 'soon', 'a non-negative number'],
        ['unload-idle', '-1', 'a non-negative number'],
        ['max-run-memory', 'lots', 'a non-negative number'],
      ] as const) {
        const r = await cli(['worker', '--redis', 'redis://127.0.0.1:1', `--${flagName}=${value}`], ws.root);
        assert.equal(r.code, 1, flagName);
        assert.equal(r.stderr.trim(), `error: --${flagName} must be ${rule}`, flagName);
      }
    });

    it('admits by the UNet activations stored in --data, reading them only', async () => {
      // A store as serve's activation profiler writes it (server/sd/activation-store.ts), for the demo UNet file as it
      // is now, with factors far above the config-based estimate: the 32×32 graph the default budget admits is refused.
      const data = path.join(ws.root, 'data-measured');
      await mkdir(data);
      const unet = path.resolve((await inspectModelFolder(path.join(demoModels, 'demo', 'general'))).parts.unet);
      const st = await stat(unet);
      const sha256 = 'f'.repeat(64);
      const store = {
        version: 1,
        unets: { [sha256]: { perPixel: 1e9, perPixelSquared: 1e6, points: [], measuredAt: new Date(0).toISOString() } },
        files: { [unet]: { size: st.size, mtimeMs: st.mtimeMs, sha256 } },
      };
      const storeFile = path.join(data, 'unet-activations.json');
      const text = `${JSON.stringify(store, null, 1)}\n`;
      await writeFile(storeFile, text);

      const file = await writeGraph('small.json', 32);
      const out = path.join(ws.root, 'out-measured');
      const r = await cli(['run', file, '--models', demoModels, '--out', out, '--data', data], ws.root, 60_000);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /node "noise", field "params\.width": .* at its peak \(UNet activations as measured on the model\), more than the per-run budget of .*\[too_large\]/);
      await assertNothingRan(r, out);
      assert.equal(await readFile(storeFile, 'utf8'), text, 'the store is read, not rewritten');
      assert.deepEqual(await readdir(data), ['unet-activations.json']);

      // A data folder without that measurement (here: none at all) leaves the config-based estimate, which admits it.
      const none = path.join(ws.root, 'data-none');
      const ok = await cli(['run', file, '--models', demoModels, '--out', out, '--data', none], ws.root);
      assert.equal(ok.code, 0, ok.stderr);
      await assert.rejects(stat(none), { code: 'ENOENT' }, 'a run creates no data folder');
    });
  });

  it('--help and -h print usage and exit 0, for the tool and for each command; a missing graph is one line', async () => {
    for (const args of [['--help'], ['-h'], ['help']]) {
      const r = await cli(args, ws.root);
      assert.equal(r.code, 0, args.join(' '));
      assert.match(r.stdout, /^usage: fusegraph <command>/);
      for (const c of ['run', 'validate', 'nodes', 'tokenize', 'schedule', 'serve']) assert.match(r.stdout, new RegExp(`\\n  ${c}\\b`));
    }
    // `serve -h` must print usage, not start a server (the test would hang on a listening server).
    for (const [command, flag] of [['serve', '-h'], ['run', '--help'], ['schedule', '-h'], ['validate', '--help']] as const) {
      const r = await cli([command, flag], ws.root);
      assert.equal(r.code, 0, `${command} ${flag}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^usage: fusegraph ${command}\\b`));
      assert.doesNotMatch(r.stdout, /commands:/);
    }
    assert.match((await cli(['run', '--help'], ws.root)).stdout, /\[--max-run-memory BYTES\] \[--data DIR\]/);
    const noArgs = await cli([], ws.root);
    assert.equal(noArgs.code, 2);
    const missing = await cli(['run', 'no-such-graph.json'], ws.root);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr.trim(), 'error: no-such-graph.json: no such file');
    assert.doesNotMatch(missing.stderr, /ENOENT/);
  });
});
