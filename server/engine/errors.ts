import type { GraphIssue } from '../../nodes/graph-format.js';
import { formatIssue } from '../../nodes/graph-format.js';
import type { RunError } from '../../nodes/protocol.js';

/** The graph failed validation; nothing ran. Carries every issue at once. */
export class GraphValidationError extends Error {
  constructor(readonly issues: readonly GraphIssue[]) {
    super(`graph is invalid:\n${issues.map((i) => `  - ${formatIssue(i)}`).join('\n')}`);
    this.name = 'GraphValidationError';
  }
}

/**
 * A node failed while running. `cause` keeps the original exception, with its stack, for the server log only;
 * the server sends clients the message with its paths made relative (server/http/run-error.ts).
 */
export class NodeExecutionError extends Error {
  constructor(
    readonly node: string,
    readonly nodeType: string,
    message: string,
    cause?: unknown,
    readonly field?: string,
  ) {
    super(`node "${node}" (${nodeType})${field ? `, field "${field}"` : ''}: ${message}`, cause === undefined ? undefined : { cause });
    this.name = 'NodeExecutionError';
  }
}

/** The run was cancelled through its AbortSignal; raised within one DDIM step. */
export class RunCancelledError extends Error {
  constructor() {
    super('run cancelled');
    this.name = 'RunCancelledError';
  }
}

/**
 * A failure already put in the words a client may see (a scale-out worker's toRunError, carried through Redis): the
 * API node records and sends it as it is, neither rebuilt nor redacted a second time.
 */
export class ReportedRunError extends Error {
  constructor(readonly report: RunError) {
    super(report.message);
    this.name = 'ReportedRunError';
  }
}
