import { LoadModel } from '../../../nodes/index.js';
import type { ParamValues } from '../../../nodes/define.js';
import { fileStamps, modelFolderStamp } from '../../sd/model-folder.js';
import { VaeSourceError, isCheckpointFile, pathKind, type ModelSource } from '../../sd/model-source.js';
import { resolveInRoot } from '../paths.js';
import { implement, type AdmitFacts } from '../types.js';

type Params = ParamValues<(typeof LoadModel)['params']>;

/** The source a LoadModel names: a folder or a checkpoint file, with its VAE; null when a path escapes its root. */
async function sourceOf(params: Params, modelsRoot: string): Promise<{ source: ModelSource } | { escapes: 'params.path' | 'params.vae' }> {
  const file = resolveInRoot(modelsRoot, params.path);
  if (!file) return { escapes: 'params.path' };
  let vae: string | null = null;
  if (params.vae.trim() !== '') {
    const v = resolveInRoot(modelsRoot, params.vae);
    if (!v) return { escapes: 'params.vae' };
    vae = v;
  }
  const kind = isCheckpointFile(file) && (await pathKind(file)) !== 'folder' ? 'checkpoint' : 'folder';
  return { source: { path: file, kind, ema: params.ema, vae, prediction: params.prediction as ModelSource['prediction'], loras: [] } };
}

/**
 * The checks a checkpoint needs beyond a folder's: what the file is, EMA asked for and absent, the VAE it names.
 * Returns the source admission can still read facts from (so the nodes downstream are checked too), or null when
 * the model itself cannot be read.
 */
async function admitSource(source: ModelSource, params: Params, facts: AdmitFacts): Promise<ModelSource | null> {
  if (source.kind === 'checkpoint') {
    if ((await pathKind(source.path)) !== 'file') {
      facts.report({ field: 'params.path', code: 'model_unavailable', message: `checkpoint file not found: ${params.path}`, actual: params.path });
      return null;
    }
    try {
      const d = await facts.describeCheckpoint(source.path);
      if (d.unsupported !== null) {
        facts.report({ field: 'params.path', code: 'model_unsupported', message: d.unsupported, actual: params.path });
        return null;
      }
      if (source.ema && !d.hasEma) {
        facts.report({ field: 'params.ema', code: 'param_range', message: `${params.path} has no EMA weights (model_ema.*)`, expected: 'false', actual: 'true' });
      }
    } catch (err) {
      facts.report({ field: 'params.path', code: 'model_unavailable', message: (err as Error).message, actual: params.path });
      return null;
    }
  } else if (source.ema) {
    facts.report({ field: 'params.ema', code: 'param_range', message: 'ema applies to checkpoint files: an ONNX folder has one UNet', expected: 'false', actual: 'true' });
  }
  if (source.vae !== null && (await pathKind(source.vae)) === null) {
    facts.report({ field: 'params.vae', code: 'model_unavailable', message: `VAE not found: ${params.vae}`, actual: params.vae });
    return { ...source, vae: null };
  }
  return source;
}

export const loadModel = implement(LoadModel, {
  kind: 'once',
  // The model manager already keeps sessions across runs; loading through it again is what keeps them in use.
  cacheable: false,
  async fingerprint(params, roots) {
    const s = await sourceOf(params, roots.models);
    if (!('source' in s)) return 'escapes';
    const own = s.source.kind === 'folder' ? await modelFolderStamp(s.source.path) : await fileStamps([s.source.path]);
    return `${own}|${s.source.vae ? await fileStamps([s.source.vae]) : ''}|${params.ema}|${params.prediction}`;
  },
  // Admission reads the model's metadata (sizes, scheduler, memory facts) for the nodes downstream: a folder's configs
  // or a checkpoint's tensor shapes, never its weights. A model that is missing, unreadable or not supported is refused
  // here, before any run, with the same code a scale-out API node gives.
  async admit(params, facts) {
    const s = await sourceOf(params, facts.roots.models);
    if (!('source' in s)) return; // validation reported the escape
    const readable = await admitSource(s.source, params, facts);
    if (!readable) return;
    try {
      facts.provideModel(await facts.inspectModel(readable));
    } catch (err) {
      const vae = readable.vae !== null && err instanceof VaeSourceError;
      facts.report({ field: vae ? 'params.vae' : 'params.path', code: 'model_unavailable', message: (err as Error).message, actual: vae ? params.vae : params.path });
    }
  },
  async run(_inputs, params, ctx) {
    const s = await sourceOf(params, ctx.roots.models);
    if (!('source' in s)) throw ctx.error(`path "${s.escapes === 'params.vae' ? params.vae : params.path}" escapes the models folder`, s.escapes);
    try {
      return { model: await ctx.acquireModel(s.source, params.provider) };
    } catch (err) {
      throw ctx.error((err as Error).message, err instanceof VaeSourceError ? 'params.vae' : 'params.path', err);
    }
  },
});
