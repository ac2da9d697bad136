import type { GraphIssue } from '../../nodes/graph-format.js';
import type { FileRef, ServerFrame, SnapshotRun } from '../../nodes/protocol.js';
import type { StepFeeds } from './step-feeds.js';

export type NodeRunState = 'queued' | 'running' | 'cached' | 'done' | 'error' | 'cancelled';

export interface StepProgress {
  readonly step: number;
  readonly steps: number;
  readonly t: number;
}

/** Everything about a node that comes from a run rather than from the graph; never saved with the graph. */
export interface NodeStatus {
  readonly state?: NodeRunState;
  readonly progress?: StepProgress;
  readonly preview?: string;
  readonly images?: readonly FileRef[];
  readonly ms?: number;
  readonly error?: { readonly message: string };
  readonly issues?: readonly GraphIssue[];
  /** Evaluated at every step of a sampler rather than once: its state follows that sampler's. */
  readonly perStep?: boolean;
  /** For a per-step node, the timestep its sampler is at. */
  readonly t?: number;
}

export const EMPTY_STATUS: NodeStatus = Object.freeze({});

export type StatusMap = Map<string, NodeStatus>;

const RUN_STATES: ReadonlySet<string> = new Set(['queued', 'running', 'cached', 'done', 'error', 'cancelled']);
const NO_FEEDS: StepFeeds = new Map();

/**
 * Applies one WebSocket message of one run to that run's per-node statuses and returns the ids that changed.
 * `feeds` (from the run's graph) lets the per-step nodes a sampler evaluates follow its state.
 */
export function applyRunMessage(map: StatusMap, msg: ServerFrame, feeds: StepFeeds = NO_FEEDS): string[] {
  const set = (id: string, next: NodeStatus) => {
    map.set(id, next);
    return [id];
  };
  const prev = (id: string) => map.get(id) ?? EMPTY_STATUS;
  const fed = (sampler: string, state: NodeRunState, t?: number) =>
    (feeds.get(sampler) ?? []).flatMap((id) => {
      const p = prev(id);
      if (p.state === state && p.t === t) return [];
      const { t: _old, ...rest } = p;
      return set(id, { ...rest, state, perStep: true, ...(t !== undefined ? { t } : {}) });
    });
  switch (msg.type) {
    case 'node_started':
      return [...set(msg.node, { ...prev(msg.node), state: 'running', error: undefined, progress: undefined }), ...fed(msg.node, 'running')];
    case 'node_cached':
      return [...set(msg.node, { ...prev(msg.node), state: 'cached', progress: undefined }), ...fed(msg.node, 'cached')];
    case 'progress':
      return [
        ...set(msg.node, { ...prev(msg.node), state: 'running', progress: { step: msg.step, steps: msg.steps, t: msg.t } }),
        ...fed(msg.node, 'running', msg.t),
      ];
    case 'preview':
      return set(msg.node, { ...prev(msg.node), preview: msg.image });
    case 'node_done':
      return [...set(msg.node, { ...prev(msg.node), state: 'done', ms: msg.ms }), ...fed(msg.node, 'done')];
    case 'output':
      return set(msg.node, { ...prev(msg.node), images: [...(prev(msg.node).images ?? []), ...msg.images] });
    case 'error':
      if (!('node' in msg)) return [];
      if (!msg.node) return settle(map);
      return [
        ...set(msg.node, { ...prev(msg.node), state: 'error', error: { message: msg.message } }),
        ...settle(map),
      ];
    case 'cancelled':
    case 'done':
      return settle(map);
    default:
      return [];
  }
}

/**
 * When a run ends, nodes it never reached go back to idle; nodes it stopped in the middle (a cancel, or another
 * node's error) say so and keep their partial progress, which the view shows as stopped.
 */
function settle(map: StatusMap): string[] {
  const changed: string[] = [];
  for (const [id, s] of map) {
    if (s.state === 'queued' || s.state === 'running') {
      map.set(id, s.state === 'running' ? { ...s, state: 'cancelled' } : { ...s, state: undefined, progress: undefined });
      changed.push(id);
    }
  }
  return changed;
}

/** Marks the nodes of a freshly submitted run as queued, dropping what the previous run left. */
export function beginRun(map: StatusMap, nodeIds: Iterable<string>): string[] {
  const changed = new Set(map.keys());
  map.clear();
  for (const id of nodeIds) {
    map.set(id, { state: 'queued' });
    changed.add(id);
  }
  return [...changed];
}

/** Rebuilds statuses from a run record (page reload, WS snapshot). */
export function statusesFromRun(run: SnapshotRun, feeds: StepFeeds = NO_FEEDS): StatusMap {
  const map: StatusMap = new Map();
  for (const [id, state] of Object.entries(run.node_states)) {
    if (!RUN_STATES.has(state)) continue;
    map.set(id, { state: state as NodeRunState });
    for (const f of feeds.get(id) ?? []) map.set(f, { state: state as NodeRunState, perStep: true });
  }
  for (const o of run.outputs) {
    if (o.kind !== 'image') continue;
    const s = map.get(o.node) ?? EMPTY_STATUS;
    map.set(o.node, { ...s, images: [...(s.images ?? []), { name: o.name, url: o.url }] });
  }
  if (run.error?.node) {
    const s = map.get(run.error.node) ?? EMPTY_STATUS;
    map.set(run.error.node, { ...s, state: 'error', error: { message: run.error.message } });
  }
  if (run.status === 'running') {
    if (run.progress) {
      const s = map.get(run.progress.node) ?? EMPTY_STATUS;
      map.set(run.progress.node, { ...s, state: 'running', progress: { step: run.progress.step, steps: run.progress.steps, t: run.progress.t } });
    }
    if (run.preview) {
      const s = map.get(run.preview.node) ?? EMPTY_STATUS;
      map.set(run.preview.node, { ...s, preview: run.preview.image });
    }
  }
  if (run.status !== 'queued' && run.status !== 'running') settle(map);
  return map;
}

/**
 * Folds a snapshot of the active run into what live events already built: the snapshot's states and progress win,
 * while previews and timings it does not carry are kept.
 */
export function mergeSnapshot(map: StatusMap, run: SnapshotRun, feeds: StepFeeds = NO_FEEDS): string[] {
  const fresh = statusesFromRun(run, feeds);
  const changed: string[] = [];
  for (const [id, s] of fresh) {
    const old = map.get(id) ?? EMPTY_STATUS;
    map.set(id, { ...old, ...s, ...(s.images ? {} : old.images ? { images: old.images } : {}) });
    changed.push(id);
  }
  if (run.status !== 'queued' && run.status !== 'running') changed.push(...settle(map));
  return changed;
}

/**
 * Hangs validation issues on their nodes. The server may name a param or an input with or without a
 * `params.` / `inputs.` prefix; the widget lookup strips it. Issues without a node are returned for a toast.
 */
export function attachIssues(map: StatusMap, issues: readonly GraphIssue[]): { changed: string[]; unplaced: GraphIssue[] } {
  const changed = new Set<string>();
  const unplaced: GraphIssue[] = [];
  for (const i of issues) {
    if (!i.node) {
      unplaced.push(i);
      continue;
    }
    const s = map.get(i.node) ?? EMPTY_STATUS;
    map.set(i.node, { ...s, issues: [...(s.issues ?? []), i] });
    changed.add(i.node);
  }
  return { changed: [...changed], unplaced };
}

export function issueField(issue: GraphIssue): string | null {
  return issue.field ? issue.field.replace(/^(params|inputs)\./, '') : null;
}

/** Editing a field answers the issue about it. */
export function clearFieldIssues(map: StatusMap, node: string, field: string): boolean {
  const s = map.get(node);
  if (!s?.issues?.length) return false;
  const issues = s.issues.filter((i) => issueField(i) !== field);
  if (issues.length === s.issues.length) return false;
  map.set(node, { ...s, issues });
  return true;
}
