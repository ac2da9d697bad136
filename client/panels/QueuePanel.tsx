import { useEffect, useState } from 'react';
import type { QueueEntry, RunsView } from '../runs/run-controller.js';

export interface QueueActions {
  readonly select: (runId: string | null) => void;
  readonly cancel: (runId: string) => void;
  readonly front: (runId: string) => void;
  readonly clear: () => void;
  readonly setPaused: (paused: boolean) => void;
}

interface Props {
  readonly view: RunsView;
  readonly actions: QueueActions;
}

const shortId = (id: string) => (id.length > 10 ? id.slice(0, 8) : id);

function elapsed(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
}

/** Re-renders once a second while something is listed, so elapsed times tick. */
function useNow(active: boolean): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [active]);
  return now;
}

/**
 * ComfyUI's queue sidebar: the running and queued runs of every client, each with its graph name, position,
 * progress and time, and what can be done to it. Clicking a run shows its progress on the canvas.
 */
export function QueuePanel({ view, actions }: Props) {
  const { running, pending, paused } = view.queue;
  const now = useNow(running.length + pending.length > 0);
  const shown = view.active?.runId;
  const item = (e: QueueEntry) => {
    const pct = e.progress ? Math.round((e.progress.step / Math.max(1, e.progress.steps)) * 100) : 0;
    const time = e.status === 'running' && e.startedAt ? `running ${elapsed(now - e.startedAt)}` : `waiting ${elapsed(now - e.createdAt)}`;
    return (
      <li
        key={e.runId}
        className={`fg-queue-item${e.runId === shown ? ' fg-queue-shown' : ''}`}
        data-run-id={e.runId}
        data-status={e.status}
        data-testid="queue-item"
      >
        <button
          type="button"
          className="fg-queue-main"
          title={e.runId === shown ? 'Shown on the canvas' : 'Show this run on the canvas'}
          onClick={() => actions.select(view.selected === e.runId ? null : e.runId)}
        >
          <span className="fg-queue-line">
            <span className="fg-queue-name">{e.name ?? 'loading…'}</span>
            <span className={`fg-badge fg-badge-${e.status}`}>{e.status === 'queued' ? `#${(e.position ?? 0) + 1}` : e.cancelRequested ? 'cancelling' : 'running'}</span>
          </span>
          <span className="fg-queue-line fg-muted">
            <span title={e.runId}>{shortId(e.runId)}{e.mine ? '' : ' · other client'}</span>
            <span data-testid="queue-elapsed">{time}</span>
          </span>
          {e.status === 'running' && (
            <span className="fg-queue-progress" role="progressbar" aria-valuemin={0} aria-valuemax={e.progress?.steps ?? 0} aria-valuenow={e.progress?.step ?? 0}>
              <span className="fg-progress-bar"><span className="fg-progress-fill" style={{ width: `${pct}%` }} /></span>
              <span className="fg-muted">{e.progress ? `${e.progress.node} ${e.progress.step}/${e.progress.steps}` : 'starting'}</span>
            </span>
          )}
        </button>
        <span className="fg-queue-buttons">
          {e.status === 'queued' && (e.position ?? 0) > 0 && (
            <button type="button" className="fg-icon-button" title="Move to the front of the queue" data-testid="queue-front" onClick={() => actions.front(e.runId)}>⤒</button>
          )}
          <button type="button" className="fg-icon-button" title="Cancel this run" data-testid="queue-cancel" onClick={() => actions.cancel(e.runId)}>✕</button>
        </span>
      </li>
    );
  };
  return (
    <section className="fg-queue" aria-label="Queue" data-testid="queue-panel">
      <header className="fg-queue-header">
        <h2 className="fg-panel-title">Queue</h2>
        <span className="fg-spacer" />
        <button type="button" className="fg-button" data-testid="queue-pause" onClick={() => actions.setPaused(!paused)}
          title={paused ? 'Let queued runs start again' : 'Stop starting queued runs (running runs finish)'}>
          {paused ? 'Resume' : 'Pause'}
        </button>
        <button type="button" className="fg-button" data-testid="queue-clear" disabled={!pending.length} onClick={actions.clear} title="Cancel every queued run">
          Clear
        </button>
      </header>
      {paused && (
        <div className="fg-queue-paused" role="status" data-testid="queue-paused">
          Queue paused: queued runs wait until you resume.
        </div>
      )}
      {running.length + pending.length === 0 ? (
        <div className="fg-muted">Nothing running. Ctrl+Enter queues the graph, Ctrl+Shift+Enter at the front.</div>
      ) : (
        <ol className="fg-queue-list">
          {running.map(item)}
          {pending.map(item)}
        </ol>
      )}
    </section>
  );
}
