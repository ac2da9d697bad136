/**
 * FuseGraph's client library (`import { FuseGraphClient } from 'fusegraph/client'`): runs, cancels and follows
 * graphs over one WebSocket, in Node 20 and in browsers, and builds graphs with types from the node definitions.
 * It depends only on the shared contract in nodes/, never on the server.
 */
export { FuseGraphClient, connect, type ConnectOptions, type RunOptions, type ModelInfo } from './client.js';
export { RunHandle, type RunResult, type OutputImage, type ProgressFrame, type PreviewFrame, type OutputFrame } from './run-handle.js';
export { InvalidGraphError, RunFailedError, RunCancelledError, FuseGraphError } from './errors.js';
export type { Graph, GraphIssue } from '../nodes/graph-format.js';
export type { RunEvent, ServerFrame, RunOutput, QueueState } from '../nodes/protocol.js';
export {
  graph, GraphBuilder, GraphBuildError,
  type OutputRef, type NodeRef, type ParamsOf, type InputsOf, type AddOptions,
} from './graph-builder.js';
