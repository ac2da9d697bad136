import { GraphValidationError, NodeExecutionError } from '../engine/errors.js';
import type { RunError } from '../../nodes/protocol.js';

/**
 * What a client learns about a failed run: the node, field and message, never a server stack trace or absolute
 * path (`redact` makes them relative to their roots; see redactPaths).
 */
export function toRunError(err: unknown, redact: (text: string) => string): RunError {
  if (err instanceof NodeExecutionError) {
    return {
      node: err.node,
      node_type: err.nodeType,
      ...(err.field !== undefined ? { field: err.field } : {}),
      message: redact(err.message),
    };
  }
  if (err instanceof GraphValidationError) {
    return { node: err.issues[0]?.node ?? null, message: err.message, issues: [...err.issues] };
  }
  // Anything else is a server bug: its text may name server internals, so the client gets a fixed message.
  return { node: null, message: 'internal error outside any node; the details are in the server log' };
}
