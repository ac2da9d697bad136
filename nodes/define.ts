import type { SocketType } from './socket-types.js';

/** What GET /api/models lists: ONNX model folders, checkpoint files, standalone VAE files and LoRA files. */
export type ModelEntryKind = 'folder' | 'checkpoint' | 'vae' | 'lora';

/** A parameter of a node: a literal JSON value edited by a widget, validated before a run. */
export type ParamDef =
  | {
      kind: 'string';
      default: string;
      multiline?: boolean;
      description: string;
      maxLength?: number;
      /** A regular expression (source) the whole value must match, e.g. for file names. */
      pattern?: string;
    }
  | {
      kind: 'path';
      default: string;
      root: 'models' | 'input';
      extensions?: readonly string[];
      /** An empty value is allowed and means this (e.g. LoadModel's `vae`: "the model's own"); the widget says so. */
      emptyMeans?: string;
      /** Under the models root: which kinds of the server's model listing the widget offers (default all). */
      lists?: readonly ModelEntryKind[];
      description: string;
    }
  | { kind: 'int'; default: number; min: number; max: number; step?: number; seed?: boolean; description: string }
  | { kind: 'float'; default: number; min: number; max: number; step?: number; description: string }
  | { kind: 'enum'; default: string; options: readonly string[]; description: string }
  | { kind: 'bool'; default: boolean; description: string };

export interface InputDef {
  readonly type: SocketType;
  readonly optional?: boolean;
  readonly description: string;
}

export interface OutputDef {
  readonly type: SocketType;
  readonly description: string;
}

/**
 * What a node does to the fusion schedule, for the editor's timeline (which model's noise is used at each t):
 * a switch picks `above` while t > its int param `threshold` and `atOrBelow` otherwise; a blend mixes models;
 * a model node predicts with the model wired to its input `model`.
 */
export type ScheduleRole =
  | { readonly role: 'switch'; readonly threshold: string; readonly above: string; readonly atOrBelow: string }
  | { readonly role: 'blend' }
  | { readonly role: 'model'; readonly model: string };

/**
 * The one declaration of a node type. The editor builds its palette, sockets and widgets from it;
 * the server validates graphs and types its implementation from it.
 */
export interface NodeDef<
  I extends Record<string, InputDef> = Record<string, InputDef>,
  O extends Record<string, OutputDef> = Record<string, OutputDef>,
  P extends Record<string, ParamDef> = Record<string, ParamDef>,
  T extends string = string,
> {
  /** Kept as its literal type, so `NodeType` is the union of the defined types. */
  readonly type: T;
  readonly title: string;
  readonly category: 'model' | 'conditioning' | 'latent' | 'sampling' | 'fusion' | 'image';
  readonly description: string;
  readonly inputs: I;
  readonly outputs: O;
  readonly params: P;
  /** Output nodes are the roots of execution: a graph runs what they need and nothing else. */
  readonly output: boolean;
  readonly schedule?: ScheduleRole;
}

export function defineNode<
  const T extends string,
  const I extends Record<string, InputDef>,
  const O extends Record<string, OutputDef>,
  const P extends Record<string, ParamDef>,
>(def: NodeDef<I, O, P, T>): NodeDef<I, O, P, T> {
  return def;
}

/** The TypeScript value type of a param, derived from its definition. */
export type ParamValue<D extends ParamDef> = D extends { kind: 'int' | 'float' }
  ? number
  : D extends { kind: 'bool' }
    ? boolean
    : string;

export type ParamValues<P extends Record<string, ParamDef>> = { [K in keyof P]: ParamValue<P[K]> };
