import { GraphValidationError, NodeExecutionError, ReportedRunError, RunCancelledError } from '../engine/errors.js';
import type { RunError } from '../../nodes/protocol.js';
import { formatBytes } from '../engine/format-bytes.js';
import { outOfMemory } from '../runtime/out-of-memory.js';
import { sessionFailure } from '../runtime/session-host.js';
import { ModelFolderError } from '../sd/model-folder.js';

/** Whether a node failed because a model could not be read or loaded (its cause chain holds the model reader's error). */
function modelMissing(err: Error): boolean {
  for (let e: unknown = err.cause; e instanceof Error; e = e.cause) if (e instanceof ModelFolderError) return true;
  return false;
}

/**
 * What a client learns about a failed run: the node, field and message, never a server stack trace or absolute
 * path (`redact` makes them relative to their roots; see redactPaths).
 */
export function toRunError(err: unknown, redact: (text: string) => string): RunError {
  if (err instanceof ReportedRunError) return err.report;
  if (err instanceof RunCancelledError) return { code: 'cancelled', node: null, message: err.message };
  if (err instanceof NodeExecutionError) {
    const oom = outOfMemory(err);
    if (oom) {
      // Admission's estimate let the run in but the machine could not hold it: say so plainly, not in ORT's words.
      const what = oom.bytes !== null ? ` (${formatBytes(oom.bytes)} more could not be allocated)` : '';
      return {
        code: 'out_of_memory',
        node: err.node,
        node_type: err.nodeType,
        message: `out of memory at node "${err.node}" (${err.nodeType})${what}: this run needs more memory than the server ` +
          'has free; use a smaller size or batch (and a lower --max-run-memory, so admission refuses such runs up front)',
      };
    }
    // A session process that hung, was killed from outside or crashed: the message says which signal or exit.
    const failure = sessionFailure(err);
    if (failure && failure !== 'out_of_memory') {
      return { code: failure, node: err.node, node_type: err.nodeType, message: redact(err.message) };
    }
    return {
      code: modelMissing(err) ? 'model_missing' : 'node_failed',
      node: err.node,
      node_type: err.nodeType,
      ...(err.field !== undefined ? { field: err.field } : {}),
      message: redact(err.message),
    };
  }
  if (err instanceof GraphValidationError) {
    const first = err.issues[0];
    return { code: 'invalid_graph', node: first?.node ?? null, ...(first?.field ? { field: first.field } : {}), message: err.message, issues: [...err.issues] };
  }
  // Anything else is a server bug: its text may name server internals, so the client gets a fixed message.
  return { code: 'internal', node: null, message: 'internal error outside any node; the details are in the server log' };
}
