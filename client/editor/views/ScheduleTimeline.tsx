import { useRef } from 'react';
import { stopCanvasEvents } from '../../controls/stop-canvas-events.js';
import type { ScheduleSegment } from '../schedule.js';
import { T_MAX } from '../schedule.js';

interface Props {
  readonly segments: readonly ScheduleSegment[];
  /** The timestep the run is at now, while it runs. */
  readonly cursor?: number;
  /** A switch's threshold, draggable along the timeline. */
  readonly split?: { readonly t: number; readonly step: number; readonly onChange: (t: number) => void };
}

/** Left edge = t 1000 (noise), right edge = t 0 (image), as the sampler walks it. */
const pct = (t: number) => `${((T_MAX - t) / T_MAX) * 100}%`;

/**
 * The fusion schedule, seen: which branch produces the noise over t = 1000 → 0 (blend, or one model alone), from the
 * wired graph; a cursor at the current t while a run goes; on a switch, its threshold is a handle to drag.
 */
export function ScheduleTimeline({ segments, cursor, split }: Props) {
  const bar = useRef<HTMLDivElement>(null);
  const drag = (e: React.PointerEvent) => {
    if (!split) return;
    e.stopPropagation();
    e.preventDefault();
    const el = bar.current;
    if (!el) return;
    const at = (clientX: number) => {
      const r = el.getBoundingClientRect();
      const t = T_MAX - ((clientX - r.left) / r.width) * T_MAX;
      return Math.min(T_MAX, Math.max(0, Math.round(t / split.step) * split.step));
    };
    const move = (m: PointerEvent) => split.onChange(at(m.clientX));
    const up = () => {
      window.removeEventListener('pointermove', move);
      window.removeEventListener('pointerup', up);
    };
    window.addEventListener('pointermove', move);
    window.addEventListener('pointerup', up);
  };
  return (
    <div className="fg-timeline" data-testid="timeline" {...stopCanvasEvents}>
      <div className="fg-timeline-bar" ref={bar}>
        {segments.map((s) => (
          <div
            key={`${s.from}-${s.node}`}
            className={`fg-timeline-span fg-timeline-${s.kind}`}
            style={{ left: pct(s.from), width: `${((s.from - s.to) / T_MAX) * 100}%` }}
            title={`t ${Math.round(s.from)} → ${Math.round(s.to)}: ${s.label} (${s.node})`}
            data-testid="timeline-span"
            data-label={s.label}
            data-from={s.from}
            data-to={s.to}
          >
            <span>{s.label}</span>
          </div>
        ))}
        {split && (
          <div className="fg-timeline-split" style={{ left: pct(split.t) }} data-testid="timeline-split" title={`switch at t = ${split.t}: drag to change`}
            onPointerDown={drag} />
        )}
        {cursor !== undefined && <div className="fg-timeline-cursor" style={{ left: pct(cursor) }} data-testid="timeline-cursor" data-t={cursor} />}
      </div>
      <div className="fg-timeline-scale"><span>t 1000</span><span>0</span></div>
    </div>
  );
}
