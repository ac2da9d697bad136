import { useRef } from 'react';
import type { TemplateInfo } from '../../nodes/protocol.js';
import type { RunsView } from '../runs/run-controller.js';
import { TemplatesMenu } from './TemplatesMenu.js';

export interface ToolbarActions {
  readonly run: () => void;
  readonly cancel: () => void;
  readonly resumeQueue: () => void;
  readonly listTemplates: () => Promise<TemplateInfo[]>;
  readonly loadTemplate: (name: string) => void;
  readonly newGraph: () => void;
  readonly importFile: (file: File) => void;
  readonly exportGraph: () => void;
  readonly copyGraph: () => void;
  readonly pasteGraph: () => void;
  readonly undo: () => void;
  readonly redo: () => void;
  readonly arrange: () => void;
  readonly fit: () => void;
}

interface Props {
  readonly actions: ToolbarActions;
  readonly runs: RunsView;
  readonly graphName?: string;
}

const BUSY = new Set(['queued', 'running']);

export function Toolbar({ actions, runs, graphName }: Props) {
  const file = useRef<HTMLInputElement>(null);
  const active = runs.active;
  const busy = Boolean(active && BUSY.has(active.status));
  return (
    <header className="fg-toolbar">
      <div className="fg-brand">FuseGraph</div>
      <div className="fg-toolbar-group">
        <button type="button" className="fg-button fg-button-primary" onClick={actions.run} title="Run the graph (Ctrl+Enter)" data-testid="run">
          Run
        </button>
        <button type="button" className="fg-button" onClick={actions.cancel} disabled={!busy} title="Cancel the run shown on the canvas" data-testid="cancel">
          Cancel
        </button>
        {active && (
          <span className={`fg-badge fg-badge-${active.status}`} data-testid="run-status" title={active.runId}>
            {active.status}
          </span>
        )}
        {active?.status === 'queued' && active.position ? <span className="fg-muted" data-testid="run-position">{active.position} ahead</span> : null}
        {runs.queue.paused && (
          <span className="fg-paused-hint" data-testid="paused-hint">
            queue paused
            <button type="button" className="fg-button" onClick={actions.resumeQueue} data-testid="resume">Resume</button>
          </span>
        )}
      </div>
      <div className="fg-toolbar-group">
        <TemplatesMenu list={actions.listTemplates} onPick={actions.loadTemplate} />
        <button type="button" className="fg-button" onClick={actions.newGraph} title="Start an empty graph">New</button>
        <button type="button" className="fg-button" onClick={() => file.current?.click()} title="Open a graph .json or a FuseGraph .png">Import</button>
        <input
          ref={file}
          type="file"
          accept=".json,application/json,.png,image/png"
          hidden
          data-testid="import-file"
          onChange={(e) => {
            const f = e.target.files?.[0];
            if (f) actions.importFile(f);
            e.target.value = '';
          }}
        />
        <button type="button" className="fg-button" onClick={actions.exportGraph} title="Download the graph as JSON (Ctrl+S)" data-testid="export">Export</button>
        <button type="button" className="fg-button" onClick={actions.copyGraph} title="Copy the graph JSON to the clipboard">Copy JSON</button>
        <button type="button" className="fg-button" onClick={actions.pasteGraph} title="Open graph JSON pasted as text">Paste JSON</button>
      </div>
      <div className="fg-toolbar-group">
        <button type="button" className="fg-button" onClick={actions.undo} title="Undo (Ctrl+Z)" data-testid="undo">Undo</button>
        <button type="button" className="fg-button" onClick={actions.redo} title="Redo (Ctrl+Y)" data-testid="redo">Redo</button>
        <button type="button" className="fg-button" onClick={actions.arrange} title="Arrange nodes automatically">Arrange</button>
        <button type="button" className="fg-button" onClick={actions.fit} title="Zoom to fit (F)">Fit</button>
      </div>
      <div className="fg-spacer" />
      {graphName && <div className="fg-graph-name" title="Graph name">{graphName}</div>}
      <div className={`fg-conn fg-conn-${runs.socket}`} title={`Server events: ${runs.socket}`} />
    </header>
  );
}
