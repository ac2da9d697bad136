import type { RunErrorCode } from '../nodes/protocol.js';
import type { GraphIssue } from '../nodes/graph-format.js';

/** The server refused the graph before queueing anything; every issue names its node and field. */
export class InvalidGraphError extends Error {
  override readonly name = 'InvalidGraphError';
  constructor(
    message: string,
    readonly issues: readonly GraphIssue[],
  ) {
    super(`${message}: ${issues.map((i) => `${i.node ?? '(graph)'}${i.field ? `.${i.field}` : ''}: ${i.message}`).join('; ')}`);
  }
}

/** The run started and failed: `node` (null outside any node) and, when the engine knows it, `field`. */
export class RunFailedError extends Error {
  override readonly name = 'RunFailedError';
  constructor(
    readonly runId: string,
    readonly node: string | null,
    message: string,
    readonly field?: string,
    readonly nodeType?: string,
    /** Why, for programs (nodes/protocol.ts RUN_ERROR_CODES); absent from servers before it existed. */
    readonly code?: RunErrorCode,
  ) {
    super(`${node === null ? 'run failed' : `node "${node}"${field ? ` field "${field}"` : ''} failed`}: ${message}`);
  }
}

export class RunCancelledError extends Error {
  override readonly name = 'RunCancelledError';
  constructor(readonly runId: string | null) {
    super(runId === null ? 'the run was cancelled before it was queued' : `run ${runId} was cancelled`);
  }
}

/** The server refused a frame (bad token, unknown run, …), or the connection is gone for good. */
export class FuseGraphError extends Error {
  override readonly name = 'FuseGraphError';
}
