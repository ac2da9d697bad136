import { z } from 'zod';
import type { GraphIssue } from './graph-format.js';
import { JsonLimitError, parseJsonLimited } from './json-limits.js';

/**
 * The wire protocol between the server and every client (editor, scripts): run summaries, statuses, WebSocket
 * frames and HTTP error bodies. Defined once here, with zod schemas, so the server's output and the client's
 * expectations cannot drift apart; tests parse what the server sends with these schemas.
 */

/** Version of GET /api/nodes' shape, so an editor can refuse a server it does not understand. */
export const NODES_API_VERSION = 1;

export const RUN_STATUSES = ['queued', 'running', 'done', 'error', 'cancelled'] as const;
export const RunStatusSchema = z.enum(RUN_STATUSES);
export type RunStatus = z.infer<typeof RunStatusSchema>;

export const NodeStateSchema = z.enum(['running', 'cached', 'done', 'error', 'cancelled']);
export type NodeState = z.infer<typeof NodeStateSchema>;

export const ClientIdSchema = z.string().regex(/^[A-Za-z0-9_.:-]{1,100}$/, 'client ids use 1–100 letters, digits, _ . : -');

export const GraphIssueSchema: z.ZodType<GraphIssue> = z.object({
  node: z.string().nullable(),
  field: z.string().nullable(),
  code: z.string() as z.ZodType<GraphIssue['code']>,
  message: z.string(),
  expected: z.string().optional(),
  actual: z.string().optional(),
});

/** A file a run wrote, as clients see it: no absolute paths, only a URL under /api. */
export const RunOutputSchema = z.object({
  node: z.string(),
  kind: z.enum(['image', 'latent']),
  name: z.string(),
  url: z.string(),
});
export type RunOutput = z.infer<typeof RunOutputSchema>;

export const FileRefSchema = z.object({ name: z.string(), url: z.string() });
export type FileRef = z.infer<typeof FileRefSchema>;

/** A file in an `output` frame; `data` (the file's bytes, base64) only for a socket that asked for inline outputs. */
export const OutputFileRefSchema = FileRefSchema.extend({ data: z.string().optional() });
export type OutputFileRef = z.infer<typeof OutputFileRefSchema>;

/** A client's label for a frame it sent, echoed on the answer so it can match the two (1–100 characters). */
export const RefSchema = z.string().min(1).max(100);

/**
 * Why a run failed, for programs: `invalid_graph` (refused by validation or admission when it came to run, e.g. re-queued
 * by a restart after its model folder went), `model_missing` (a model's folder or files could not be read or loaded when the run reached
 * its loader),
 * `out_of_memory`, `cancelled`, `node_failed` (any other failure of a node), `internal` (a server bug outside any node),
 * and for a node whose model's session process (docs/api.md "Session processes") ended under its call:
 * `session_hung` (it made no progress within its limit and was killed), `session_killed` (a signal from outside the
 * server, e.g. `kill -9`; the kernel's OOM killer is `out_of_memory`), `session_crashed` (a crash such as SIGSEGV, or an exit).
 * Defined once here; the server sets it, scale-out carries it from the worker as it is.
 */
export const RUN_ERROR_CODES = [
  'invalid_graph', 'model_missing', 'out_of_memory', 'cancelled', 'node_failed', 'internal',
  'session_hung', 'session_killed', 'session_crashed',
] as const;
export const RunErrorCodeSchema = z.enum(RUN_ERROR_CODES);
export type RunErrorCode = z.infer<typeof RunErrorCodeSchema>;

/** What a client learns about a failed run: the node, the field and a message; never a stack or a server path. */
export const RunErrorSchema = z.object({
  /** Absent on runs recorded by servers before it existed. */
  code: RunErrorCodeSchema.optional(),
  node: z.string().nullable(),
  node_type: z.string().optional(),
  field: z.string().optional(),
  message: z.string(),
  /** Set when the engine rejected the graph at run time (validation passed at submit, e.g. a model folder vanished). */
  issues: z.array(GraphIssueSchema).optional(),
});
export type RunError = z.infer<typeof RunErrorSchema>;

export const RunTimingsSchema = z.object({
  /** From submission to start (the last start, when the run was re-queued by a restart). */
  queue_ms: z.number().nullable(),
  /** From start to finish. */
  run_ms: z.number().nullable(),
  /** Milliseconds per executed node; nodes served from the cache are absent. */
  nodes: z.record(z.string(), z.number()),
});
export type RunTimings = z.infer<typeof RunTimingsSchema>;

export const RunProgressSchema = z.object({ node: z.string(), step: z.number(), steps: z.number(), t: z.number() });
export type RunProgress = z.infer<typeof RunProgressSchema>;

/** The fields of a run that are persisted and also shown to clients. Times are epoch milliseconds. */
export const RunRecordSchema = z.object({
  id: z.string(),
  status: RunStatusSchema,
  client_id: z.string().nullable(),
  created_at: z.number(),
  started_at: z.number().nullable(),
  finished_at: z.number().nullable(),
  outputs: z.array(RunOutputSchema),
  error: RunErrorSchema.nullable(),
  timings: RunTimingsSchema.nullable(),
  node_states: z.record(z.string(), NodeStateSchema),
  /** Scale-out: the worker that ran the run (its last attempt); null (or absent, from older servers) when the server executed it. */
  worker: z.string().nullable().optional(),
});
export type RunRecord = z.infer<typeof RunRecordSchema>;

/** What lists, snapshots and GET /api/runs/:id share; the detail adds the graph. */
export const RunSummarySchema = RunRecordSchema.extend({
  /** Runs ahead of this one in the queue (0 = next); null unless queued. */
  position: z.number().nullable(),
  progress: RunProgressSchema.nullable(),
  cancel_requested: z.boolean(),
});
export type RunSummary = z.infer<typeof RunSummarySchema>;

export const RunDetailSchema = RunSummarySchema.extend({ graph: z.unknown() });
export type RunDetail = z.infer<typeof RunDetailSchema>;

export const PreviewSchema = z.object({ node: z.string(), step: z.number(), steps: z.number(), image: z.string() });

export const SnapshotRunSchema = RunSummarySchema.extend({
  /** The latest preview of a running run, for sockets that want previews. */
  preview: PreviewSchema.optional(),
});
export type SnapshotRun = z.infer<typeof SnapshotRunSchema>;

const runId = z.string();

/** Server→client frames about one run; the WebSocket hub forwards them to subscribers. */
export const RunEventSchema = z.discriminatedUnion('type', [
  /** `ref` only on the copies sent to the socket whose `run` frame submitted the run. */
  z.object({ type: z.literal('queued'), run_id: runId, position: z.number(), ref: RefSchema.optional() }),
  z.object({ type: z.literal('started'), run_id: runId }),
  z.object({ type: z.literal('node_started'), run_id: runId, node: z.string() }),
  z.object({ type: z.literal('node_cached'), run_id: runId, node: z.string() }),
  z.object({ type: z.literal('warning'), run_id: runId, node: z.string(), message: z.string() }),
  z.object({ type: z.literal('progress'), run_id: runId, node: z.string(), step: z.number(), steps: z.number(), t: z.number() }),
  z.object({ type: z.literal('preview'), run_id: runId, node: z.string(), step: z.number(), steps: z.number(), image: z.string() }),
  z.object({ type: z.literal('node_done'), run_id: runId, node: z.string(), ms: z.number() }),
  z.object({ type: z.literal('output'), run_id: runId, node: z.string(), images: z.array(OutputFileRefSchema), latents: z.array(OutputFileRefSchema) }),
  z.object({
    type: z.literal('error'), run_id: runId, node: z.string().nullable(), message: z.string(),
    node_type: z.string().optional(), field: z.string().optional(), code: RunErrorCodeSchema.optional(),
  }),
  z.object({ type: z.literal('cancelled'), run_id: runId }),
  z.object({ type: z.literal('done'), run_id: runId, outputs: z.array(RunOutputSchema), timings: RunTimingsSchema }),
]);
export type RunEvent = z.infer<typeof RunEventSchema>;

/** GET /api/queue, the answers of POST /api/queue/pause|resume and of `queue` frames; `pending` in start order. */
export const QueueStateSchema = z.object({
  paused: z.boolean(),
  concurrency: z.number(),
  running: z.array(RunSummarySchema),
  pending: z.array(RunSummarySchema),
});
export type QueueState = z.infer<typeof QueueStateSchema>;

/** Frames that are not about one run. A protocol `error` has no run_id: it answers a frame this socket sent. */
export const SessionFrameSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('snapshot'), runs: z.array(SnapshotRunSchema) }),
  z.object({ type: z.literal('pong') }),
  z.object({ type: z.literal('error'), run_id: z.undefined().optional(), message: z.string(), ref: RefSchema.optional() }),
  /** Answer to a `run` frame whose graph failed validation: nothing was queued; every issue names its node and field. */
  z.object({ type: z.literal('invalid_graph'), ref: RefSchema.optional(), message: z.string(), issues: z.array(GraphIssueSchema) }),
  /** Answer to a `validate` frame (issues empty when the graph would be accepted). */
  z.object({ type: z.literal('validated'), ref: RefSchema.optional(), issues: z.array(GraphIssueSchema) }),
  /** Answer to a `queue` frame; `cancelled` lists the runs a `clear` cancelled. */
  QueueStateSchema.extend({ type: z.literal('queue_state'), ref: RefSchema.optional(), cancelled: z.array(z.string()).optional() }),
  /** Answer to an `auth` frame: this socket may now submit, cancel and steer the queue. */
  z.object({ type: z.literal('authorized'), ref: RefSchema.optional() }),
]);

export const ServerFrameSchema = z.union([RunEventSchema, SessionFrameSchema]);
export type ServerFrame = z.infer<typeof ServerFrameSchema>;

const runIds = z.array(z.string().min(1).max(100)).max(1000);

/** Every frame a client may send; anything else is answered with an `error` frame that names no run. */
export const ClientFrameSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('subscribe'),
    runs: z.union([runIds, z.literal('all')]),
    /** Whether this socket wants preview frames (default: yes). */
    previews: z.boolean().optional(),
  }),
  z.strictObject({ type: z.literal('unsubscribe'), runs: z.union([runIds, z.literal('all')]) }),
  z.strictObject({ type: z.literal('ping') }),
  /**
   * Validates and queues a graph exactly as POST /api/runs does; answered with `queued` (carrying `ref`) or
   * `invalid_graph`. The socket is subscribed to the run. `inline_outputs`: its `output` frames carry the bytes.
   */
  z.strictObject({
    type: z.literal('run'),
    graph: z.unknown(),
    ref: RefSchema.optional(),
    front: z.boolean().optional(),
    inline_outputs: z.boolean().optional(),
  }),
  /** Cancels a run (as DELETE /api/runs/:id) and subscribes the socket to it, so its `cancelled` frame arrives. */
  z.strictObject({ type: z.literal('cancel'), run_id: z.string().min(1).max(100), ref: RefSchema.optional() }),
  z.strictObject({ type: z.literal('queue'), action: z.enum(['pause', 'resume', 'clear']), ref: RefSchema.optional() }),
  z.strictObject({ type: z.literal('validate'), graph: z.unknown(), ref: RefSchema.optional() }),
  /**
   * Presents the token in-band. A socket that connected with `?token=` (all a browser can do) may only follow
   * runs until it sends this, as HTTP accepts query tokens only on GET.
   */
  z.strictObject({ type: z.literal('auth'), token: z.string().max(1000), ref: RefSchema.optional() }),
]);
/** Client frames that change state; on a server with a token they need the token in a header or an `auth` frame. */
export const CONTROL_FRAMES: ReadonlySet<ClientFrame['type']> = new Set(['run', 'cancel', 'queue']);
export type ClientFrame = z.infer<typeof ClientFrameSchema>;

export function parseClientFrame(raw: string): { frame: ClientFrame } | { error: string } {
  let value: unknown;
  try {
    value = parseJsonLimited(raw, { what: 'the frame' });
  } catch (err) {
    // Over a limit (depth, length): refused before JSON.parse, with the limit named (issue 27).
    return { error: err instanceof JsonLimitError ? err.message : 'frame is not valid JSON' };
  }
  const parsed = ClientFrameSchema.safeParse(value);
  if (parsed.success) return { frame: parsed.data };
  return { error: `invalid frame: ${z.prettifyError(parsed.error)}` };
}

/** The body of every HTTP error response: a stable code for programs, a message for people. */
export const ErrorBodySchema = z.looseObject({
  error: z.string(),
  message: z.string(),
  issues: z.array(GraphIssueSchema).optional(),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

/** 202 answer of POST /api/runs. */
export const SubmitAcceptedSchema = z.object({ run_id: z.string(), position: z.number() });
export type SubmitAccepted = z.infer<typeof SubmitAcceptedSchema>;

/** An entry of GET /api/graphs. */
export const TemplateInfoSchema = z.object({
  name: z.string(),
  meta: z.object({ name: z.string().optional(), description: z.string().optional() }).optional(),
});
export type TemplateInfo = z.infer<typeof TemplateInfoSchema>;

/** A model folder a scale-out worker serves: its path under the worker's models root and the SHA-256 of each part's model.onnx. */
export const WorkerModelSchema = z.object({
  path: z.string(),
  /** Absent from older workers: an ONNX folder. */
  kind: z.enum(['folder', 'checkpoint', 'vae', 'lora']).optional(),
  bytes: z.number(),
  sha256: z.record(z.string(), z.string()),
});
export type WorkerModel = z.infer<typeof WorkerModelSchema>;

/** An entry of GET /api/workers (scale-out mode): what a worker announces in its heartbeat. */
export const WorkerInfoSchema = z.object({
  /** Unique per worker process (a restarted worker is a new one). */
  id: z.string(),
  name: z.string(),
  provider: z.string(),
  concurrency: z.number(),
  models: z.array(WorkerModelSchema),
  /** Model paths whose sessions are loaded now. */
  resident: z.array(z.string()),
  /** Runs executing on it now. */
  running: z.array(z.string()),
  runs_done: z.number(),
  started_at: z.number(),
  last_heartbeat: z.number(),
});
export type WorkerInfo = z.infer<typeof WorkerInfoSchema>;

/**
 * An entry of GET /api/models: an ONNX model folder, a checkpoint file or a standalone VAE file under the models
 * root (`error` when it cannot be read); checkpoints add their family, whether EMA weights are present and whether a
 * built copy is cached.
 */
export const ModelListingSchema = z.looseObject({
  path: z.string(),
  kind: z.enum(['folder', 'checkpoint', 'vae', 'lora']).optional(),
  family: z.string().optional(),
  ema: z.boolean().optional(),
  cached: z.boolean().optional(),
  error: z.string().optional(),
});
export type ModelListing = z.infer<typeof ModelListingSchema>;

/** The answer of POST /api/prompt/tokens: content tokens per 75-token chunk, and the embeddings named but not found. */
export const PromptTokensSchema = z.object({
  chunks: z.array(z.number().int().nonnegative()).min(1),
  missing: z.array(z.string()),
});
export type PromptTokens = z.infer<typeof PromptTokensSchema>;

/** The answer of GET /api/embeddings: every name `embedding:NAME` takes (subfolders as `sub/name`), sorted. */
export const EmbeddingListSchema = z.object({ embeddings: z.array(z.string()) });
export type EmbeddingList = z.infer<typeof EmbeddingListSchema>;
