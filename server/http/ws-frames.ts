import { z } from 'zod';
import type { RunEvent, RunSummary } from './run-types.js';

export const CLIENT_ID = z.string().regex(/^[A-Za-z0-9_.:-]{1,100}$/, 'client ids use 1–100 letters, digits, _ . : -');

const runIds = z.array(z.string().min(1).max(100)).max(1000);

/** Every frame a client may send; anything else is answered with an error frame. */
export const ClientFrameSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('subscribe'),
    runs: z.union([runIds, z.literal('all')]),
    /** Whether this socket wants preview frames (default: yes). */
    previews: z.boolean().optional(),
  }),
  z.strictObject({ type: z.literal('unsubscribe'), runs: z.union([runIds, z.literal('all')]) }),
  z.strictObject({ type: z.literal('ping') }),
]);

export type ClientFrame = z.infer<typeof ClientFrameSchema>;

export interface SnapshotRun extends RunSummary {
  /** The latest preview of a running run, for sockets that want previews. */
  readonly preview?: { readonly node: string; readonly step: number; readonly steps: number; readonly image: string };
}

export type ServerFrame =
  | RunEvent
  | { readonly type: 'snapshot'; readonly runs: readonly SnapshotRun[] }
  | { readonly type: 'pong' }
  | { readonly type: 'error'; readonly message: string };

export function parseClientFrame(raw: string): { frame: ClientFrame } | { error: string } {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { error: 'frame is not valid JSON' };
  }
  const parsed = ClientFrameSchema.safeParse(value);
  if (parsed.success) return { frame: parsed.data };
  return { error: `invalid frame: ${z.prettifyError(parsed.error)}` };
}
