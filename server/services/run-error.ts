import { GraphValidationError, NodeExecutionError } from '../engine/errors.js';
import type { RunError } from '../../nodes/protocol.js';

/** What a client learns about a failed run: the node, a message and details, never a server stack trace. */
export function toRunError(err: unknown): RunError {
  if (err instanceof NodeExecutionError) {
    return {
      node: err.node,
      node_type: err.nodeType,
      ...(err.field !== undefined ? { field: err.field } : {}),
      message: err.message,
      ...(err.details !== undefined ? { details: err.details } : {}),
    };
  }
  if (err instanceof GraphValidationError) {
    return { node: err.issues[0]?.node ?? null, message: err.message, issues: [...err.issues] };
  }
  return { node: null, message: err instanceof Error ? err.message : String(err) };
}
