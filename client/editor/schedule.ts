import type { NodeDef } from '../../nodes/define.js';
import { PER_STEP_SOCKETS } from '../../nodes/socket-types.js';
import type { EditorModel, ModelNode } from './graph-convert.js';

/** DDPM timesteps run from T_MAX (pure noise) down to 0. */
export const T_MAX = 1000;

/** A span of timesteps (from > t ≥ to… as the switch decides) and the branch whose noise is used there. */
export interface ScheduleSegment {
  readonly from: number;
  readonly to: number;
  /** What runs: "blend", or the model a PredictNoise uses ("general", "sd-v1-4"), or a node's title. */
  readonly label: string;
  readonly kind: 'blend' | 'model' | 'other';
  /** The node that produces the noise in this span. */
  readonly node: string;
}

const MAX_DEPTH = 32;

/** The name a model goes by on the timeline: the LoadModel's title, else the last part of its folder path. */
function modelLabel(nodes: ReadonlyMap<string, ModelNode>, id: string): string {
  const n = nodes.get(id);
  if (!n) return id;
  if (n.title) return n.title;
  const path = typeof n.params.path === 'string' ? n.params.path.replace(/\/+$/, '') : '';
  return path.split('/').pop() || id;
}

/**
 * Which branch produces the noise at each timestep, starting from node `start` (a SwitchAtTimestep, or whatever feeds
 * a sampler's noise), as the run will decide it: read from each definition's `schedule` role
 * (nodes/define.ts): a switch uses `above` while t > its threshold and `atOrBelow` otherwise. Computed from the wired graph; unwired inputs leave gaps.
 */
export function scheduleSegments(model: EditorModel, start: string, defOf: (type: string) => NodeDef | undefined): ScheduleSegment[] {
  const nodes = new Map(model.nodes.map((n) => [n.id, n]));
  const source = (target: string, input: string) => model.links.find((l) => l.target === target && l.targetInput === input)?.source;
  const out: ScheduleSegment[] = [];
  const walk = (id: string, hi: number, lo: number, depth: number): void => {
    const n = nodes.get(id);
    if (!n || hi <= lo || depth > MAX_DEPTH || n.mode === 'mute') return;
    if (n.mode === 'bypass') {
      // A bypassed node passes its first linked NOISE input through (nodes/graph-modes.ts).
      const def = defOf(n.type);
      const through = Object.entries(def?.inputs ?? {}).find(([name, i]) => i.type === 'NOISE' && source(id, name))?.[0];
      if (through) walk(source(id, through)!, hi, lo, depth + 1);
      return;
    }
    const role = defOf(n.type)?.schedule;
    if (role?.role === 'switch') {
      const t = Math.min(hi, Math.max(lo, Number(n.params[role.threshold] ?? 0)));
      const above = source(id, role.above);
      const below = source(id, role.atOrBelow);
      if (above) walk(above, hi, t, depth + 1);
      if (below) walk(below, t, lo, depth + 1);
      return;
    }
    if (role?.role === 'blend') {
      out.push({ from: hi, to: lo, label: 'blend', kind: 'blend', node: id });
      return;
    }
    if (role?.role === 'model') {
      const m = source(id, role.model);
      out.push({ from: hi, to: lo, label: m ? modelLabel(nodes, m) : n.title ?? id, kind: 'model', node: id });
      return;
    }
    out.push({ from: hi, to: lo, label: n.title ?? id, kind: 'other', node: id });
  };
  walk(start, T_MAX, 0, 0);
  return out;
}

/** The node whose schedule a sampler shows: what feeds its noise input. */
export function samplerNoiseSource(model: EditorModel, sampler: string): string | undefined {
  return model.links.find((l) => l.target === sampler && l.targetInput === 'noise')?.source;
}

/**
 * Whether a node shows the schedule timeline: the switch that decides it, and samplers (a per-step input, a
 * once-per-run output), which show what their noise input will do at each t.
 */
export function scheduleRole(def: NodeDef): 'switch' | 'sampler' | null {
  if (def.schedule?.role === 'switch') return 'switch';
  const perStepIn = Object.values(def.inputs).some((i) => PER_STEP_SOCKETS.has(i.type));
  const onceOut = Object.values(def.outputs).some((o) => !PER_STEP_SOCKETS.has(o.type));
  return perStepIn && onceOut ? 'sampler' : null;
}
