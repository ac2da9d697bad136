import type { OutputFile } from '../engine/events.js';
import type { NodeState, RunOutput, RunProgress } from '../../nodes/protocol.js';

/** The in-memory side of a running run: what the database only learns when the run finishes. */
export class LiveRun {
  readonly controller = new AbortController();
  readonly nodeStates: Record<string, NodeState> = {};
  readonly outputs: RunOutput[] = [];
  progress: RunProgress | null = null;
  /** The latest preview as a data URL, so a reconnecting client sees an image before the next step. */
  preview: { node: string; step: number; steps: number; image: string } | null = null;
  cancelRequested = false;

  constructor(
    readonly id: string,
    readonly clientId: string | null,
    readonly createdAt: number,
    readonly startedAt: number,
  ) {}

  /** Nodes still marked running when the run stopped did not finish; say so instead of leaving them "running". */
  settleRunning(state: 'error' | 'cancelled'): void {
    for (const [node, s] of Object.entries(this.nodeStates)) if (s === 'running') this.nodeStates[node] = state;
  }
}

export function toRunOutput(file: OutputFile): RunOutput {
  const route = file.kind === 'image' ? 'images' : 'latents';
  return { node: file.node, kind: file.kind, name: file.name, url: `/api/${route}/${encodeURIComponent(file.name)}` };
}
