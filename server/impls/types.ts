import type { InputDef, NodeDef, OutputDef, ParamValues } from '../../nodes/define.js';
import type { PerStepSocket } from '../../nodes/socket-types.js';
import type { GraphIssue } from '../../nodes/graph-format.js';
import type { ExecutionEvent, OutputFile } from '../engine/events.js';
import type { RunPlan } from '../engine/plan.js';
import type { SchedulerConfig } from '../sd/scheduler.js';
import type { CheckpointDescription } from '../checkpoint/describe.js';
import type { ModelManager } from '../sd/model-manager.js';
import type { LoraCheck } from '../sd/lora-folder.js';
import type { ModelSource } from '../sd/model-source.js';
import type { SdModel, Tensor32 } from '../sd/sd-model.js';

/** The state a sampling loop (DDIMStep, Sampler) hands to per-step (NOISE/SALIENCY) nodes at one model call. */
export interface StepContext {
  /** Identifies the loop; per-step results are memoised per loop and step. */
  readonly loop: string;
  readonly index: number;
  readonly steps: number;
  /** DDPM timestep of this model call (e.g. 991 … 1); fractional for σ-based samplers (Euler: 832.5). */
  readonly t: number;
  /** ᾱ_t of that input's noise level (1/(1 + σ²) for σ-based samplers). */
  readonly alphaCumprod: number;
  /** The UNet's input: x_t as the scheduler scales it (`scale_model_input`). */
  readonly x: Tensor32;
  readonly memo: Map<string, Promise<unknown>>;
}

export type StepFn<T> = (step: StepContext) => Promise<T>;

/** A guided noise prediction, with the parts saliency needs when it came from a PredictNoise node. */
export interface NoiseValue {
  readonly eps: Float32Array;
  readonly shape: readonly number[];
  readonly parts?: { readonly uncond: Float32Array; readonly cond: Float32Array; readonly scale: number; readonly node: string };
}

export interface Conditioning extends Tensor32 {
  readonly modelKey: string;
}

export interface Images extends Tensor32 {
  /** The model whose VAE decoded them (recorded in PNG metadata). */
  readonly model: SdModel;
}

/** The runtime value carried by each socket type. */
export interface SocketValues {
  MODEL: SdModel;
  CONDITIONING: Conditioning;
  LATENT: Tensor32;
  NOISE: StepFn<NoiseValue>;
  SALIENCY: StepFn<Float32Array>;
  IMAGE: Images;
}

export type InputValues<I extends Record<string, InputDef>> = {
  [K in keyof I]: I[K] extends { optional: true } ? SocketValues[I[K]['type']] | undefined : SocketValues[I[K]['type']];
};
export type OutputValues<O extends Record<string, OutputDef>> = { [K in keyof O]: SocketValues[O[K]['type']] };

/** What a node implementation may use while it runs. */
export interface RunContext {
  readonly node: string;
  readonly nodeType: string;
  /** The run's plan: `plan.submitted` is the graph as submitted (what PNGs record), `plan.params` what each node used. */
  readonly plan: RunPlan;
  readonly roots: { readonly models: string; readonly input: string; readonly output: string };
  readonly models: ModelManager;
  readonly signal: AbortSignal;
  readonly previewEvery: number;
  emit(event: ExecutionEvent): void;
  /** Loads a model for this run; it is released when the run ends. */
  acquireModel(source: ModelSource, provider: string): Promise<SdModel>;
  /** Every model the run has loaded so far (for PNG metadata). */
  loadedModels(): readonly SdModel[];
  recordOutput(file: OutputFile): void;
  /** Throws RunCancelledError once the run's signal is aborted. */
  checkCancelled(): void;
  /** Awaited by a sampler before step `step` (1-based); a no-op unless the server runs with test hooks. */
  gateStep(step: number, steps: number): Promise<void>;
  /** Tells the user something that does not stop the run, on this node (CLI line, WS `warning` frame). */
  warn(message: string): void;
  /** A clear per-node error to throw; `field` names the param or input at fault; `cause` (server log only) the original. */
  error(message: string, field?: string, cause?: unknown): Error;
}

/** What admission knows of a model folder a loader admitted: its metadata, read without loading any session. */
export interface AdmittedModel {
  /** Image side ÷ latent side (2^(VAE levels − 1)); null when the VAE has no config. */
  readonly vaeFactor: number | null;
  /** Latent sides must be multiples of this: 2^(UNet levels − 1), as an ONNX export traced at such a size needs. */
  readonly unetFactor: number | null;
  /** scheduler_config.json as DDIM reads it, and as the file holds it (the Sampler's schedulers read that); null when unreadable. */
  readonly scheduler: SchedulerConfig | null;
  readonly schedulerJson: unknown;
  /** What the loader named (LoadLoRA adds its LoRA to it). */
  readonly source?: ModelSource;
  /** The text encoder's width (its embeddings' size: EncodePrompt checks textual-inversion files); null when unknown. */
  readonly textWidth?: number | null;
}

/**
 * What a node's `admit` hook is given (ComfyUI's VALIDATE_INPUTS, with the model folders' metadata): the run's roots
 * and provider, the models on its MODEL inputs, a way to declare what the run's peak-memory estimate needs, and one to
 * report issues on its own node with field and code. Hooks run in plan order, so a loader's model is known before
 * any node downstream asks for it. server/execution/preflight.ts drives them, for serve, workers and the CLI alike.
 */
export interface AdmitFacts {
  readonly node: string;
  readonly roots: { readonly models: string };
  /** The provider a LoadModel's `auto` stands for where the run will execute (a worker's --provider), else `auto`. */
  readonly provider: string;
  /**
   * Reads what a model source is (once per source and run), without loading any session: an ONNX folder's configs,
   * or a checkpoint's tensors' shapes (and its VAE's); throws with a path-free reason when it cannot.
   */
  inspectModel(source: ModelSource): Promise<AdmittedModel>;
  /** Whether a LoRA file fits a checkpoint; throws saying what does not (another family, no matching keys, a bad file). */
  checkLora(checkpointFile: string, loraFile: string): Promise<LoraCheck>;
  /** What a checkpoint file is (family, EMA, what is not supported), read once per file and run. */
  describeCheckpoint(absFile: string): Promise<CheckpointDescription>;
  /** A loader: the model its MODEL outputs carry to the nodes downstream. */
  provideModel(model: AdmittedModel): void;
  /** The model on one of this node's MODEL inputs; null when unlinked or its loader could not read it (and said why). */
  model(input: string): AdmittedModel | null;
  /** The run's peak-memory estimate: a latent this node makes (the largest one counts; an issue names `field`). */
  usesLatent(latent: { readonly batch: number; readonly latentPixels: number; readonly imagePixels: number }, field: string): void;
  /** The estimate: this model's UNet is called (every UNet of a run may be mid-call at once) / its VAE decodes. */
  usesUnet(model: AdmittedModel): void;
  usesVae(model: AdmittedModel): void;
  /** One issue on this node. */
  report(issue: Omit<GraphIssue, 'node'>): void;
}

/** The admission hook both kinds of implementation may carry: checks that need the model folders, before anything runs. */
interface Admits<D extends NodeDef> {
  admit?(params: ParamValues<D['params']>, facts: AdmitFacts): Promise<void>;
}

/** A node computed once per run (or reused from the cross-run cache when `cacheable`). */
export interface OnceImpl<D extends NodeDef = NodeDef> extends Admits<D> {
  readonly kind: 'once';
  /** Whether its outputs may be reused by a later run with the same params and upstream. */
  readonly cacheable: boolean;
  /**
   * What the node reads from disk (paths, sizes, modification times), mixed into its signature so that a changed
   * file invalidates cached results downstream even though the params are the same.
   */
  fingerprint?(params: ParamValues<D['params']>, roots: RunContext['roots']): Promise<string>;
  run(inputs: InputValues<D['inputs']>, params: ParamValues<D['params']>, ctx: RunContext): Promise<OutputValues<D['outputs']>>;
}

/** A node evaluated inside a sampling loop, at most once per step and only when a consumer asks. */
export interface PerStepImpl<D extends NodeDef = NodeDef> extends Admits<D> {
  readonly kind: 'per-step';
  evaluate(step: StepContext, inputs: InputValues<D['inputs']>, params: ParamValues<D['params']>, ctx: RunContext): Promise<unknown>;
}

export type NodeImpl<D extends NodeDef = NodeDef> = OnceImpl<D> | PerStepImpl<D>;

/**
 * The kind an implementation of D must have: nodes whose outputs are all per-step values (NOISE, SALIENCY) are
 * evaluated inside a sampling loop; every other node (outputs or none) runs once.
 */
export type ImplKind<D extends NodeDef> = [keyof D['outputs']] extends [never]
  ? 'once'
  : D['outputs'][keyof D['outputs']]['type'] extends PerStepSocket
    ? 'per-step'
    : 'once';

type ImplOfKind<D extends NodeDef> = ImplKind<D> extends 'per-step' ? PerStepImpl<D> : OnceImpl<D>;

/** An implementation bound to its definition's type name, so the registry can check it per type. */
export type TypedImpl<D extends NodeDef> = NodeImpl & { readonly type: D['type']; readonly kind: ImplKind<D> };

/** Ties an implementation to its definition: params and sockets are typed from it, and its kind must match. */
export function implement<D extends NodeDef>(def: D, impl: ImplOfKind<D>): TypedImpl<D> {
  return { ...(impl as unknown as NodeImpl), type: def.type } as TypedImpl<D>;
}
