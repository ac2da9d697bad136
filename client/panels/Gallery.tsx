import { withToken } from '../api/auth.js';
import type { GalleryImage, RunsView } from '../runs/run-controller.js';

interface Props {
  readonly view: RunsView;
  readonly onOpen: (image: GalleryImage) => void;
}

const shortId = (id: string) => (id.length > 10 ? id.slice(0, 8) : id);

/** Output images grouped by the run that made them, newest run first. */
export function Gallery({ view, onOpen }: Props) {
  return (
    <aside className="fg-gallery" aria-label="Gallery">
      <h2 className="fg-panel-title">Gallery</h2>
      {view.gallery.length === 0 && <div className="fg-muted">Images from runs appear here.</div>}
      {view.gallery.map((run) => (
        <section key={run.runId} className="fg-gallery-run" data-run-id={run.runId}>
          <header className="fg-gallery-run-header">
            <span title={run.runId}>run {shortId(run.runId)}</span>
            <span className={`fg-badge fg-badge-${run.status}`}>{run.status}</span>
            {run.worker && <span className="fg-muted fg-gallery-worker" title="the worker that ran it">on {run.worker}</span>}
          </header>
          {run.error && <div className="fg-gallery-error" title={run.error}>{run.error}</div>}
          <div className="fg-gallery-grid">
            {run.images.map((img) => (
              <button key={img.url} type="button" className="fg-thumb" title={`${img.node}: ${img.name}`} onClick={() => onOpen(img)}>
                <img src={withToken(img.url)} alt={img.name} loading="lazy" />
              </button>
            ))}
          </div>
        </section>
      ))}
    </aside>
  );
}
