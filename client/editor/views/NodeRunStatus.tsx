import { withToken } from '../../api/auth.js';
import type { FileRef } from '../../../nodes/protocol.js';
import type { NodeStatus } from '../../runs/node-status.js';
import { stopCanvasEvents } from '../../controls/stop-canvas-events.js';

interface Props {
  readonly status: NodeStatus;
  /** Issues that name neither a param nor an input. */
  readonly nodeIssues: readonly string[];
  readonly onOpenImage: (image: FileRef) => void;
}

/**
 * The bottom of a node: what the current run says about it. It sits below every socket and widget, so growing
 * (a preview appears, images arrive) never moves a socket and never leaves links pointing at old positions.
 */
export function NodeRunStatus({ status, nodeIssues, onOpenImage }: Props) {
  const { progress, preview, images, error } = status;
  if (!progress && !preview && !images?.length && !error && !nodeIssues.length) return null;
  const pct = progress ? Math.round((progress.step / Math.max(1, progress.steps)) * 100) : 0;
  return (
    <div className="fg-run-status" {...stopCanvasEvents}>
      {(progress || preview) && (
        <div className="fg-run-row">
          {progress ? (
            <div className="fg-progress" role="progressbar" aria-valuemin={0} aria-valuemax={progress.steps} aria-valuenow={progress.step}>
              <div className="fg-progress-bar"><div className="fg-progress-fill" style={{ width: `${pct}%` }} /></div>
              <div className="fg-progress-text">
                <span>{status.state === 'cancelled' ? 'stopped at ' : ''}step {progress.step}/{progress.steps}</span>
                <span>t = {Math.round(progress.t)}</span>
              </div>
            </div>
          ) : <div className="fg-progress" />}
          {preview && <img className="fg-preview" src={preview} alt="Live preview" title="Live preview of the latent" draggable={false} />}
        </div>
      )}
      {images && images.length > 0 && (
        <div className="fg-node-images">
          {images.map((img) => (
            <button key={img.url} type="button" className="fg-thumb" title={img.name} onClick={() => onOpenImage(img)}>
              <img src={withToken(img.url)} alt={img.name} draggable={false} />
            </button>
          ))}
        </div>
      )}
      {error && (
        <div className="fg-node-error" role="alert">
          <div>{error.message}</div>
        </div>
      )}
      {nodeIssues.map((m, i) => <div key={i} className="fg-node-error" role="alert">{m}</div>)}
    </div>
  );
}
