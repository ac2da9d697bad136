import { useState } from 'react';

interface Props {
  readonly onImport: (text: string) => Promise<boolean>;
  readonly onClose: () => void;
}

/** Paste graph JSON by hand, for when the clipboard API is not allowed or the text comes from a chat or an issue. */
export function PasteDialog({ onImport, onClose }: Props) {
  const [text, setText] = useState('');
  return (
    <div className="fg-overlay" role="dialog" aria-label="Paste graph JSON" onClick={onClose}>
      <div className="fg-dialog" onClick={(e) => e.stopPropagation()}>
        <h2 className="fg-panel-title">Paste graph JSON</h2>
        <textarea
          className="fg-input fg-paste-text"
          autoFocus
          spellCheck={false}
          placeholder='{"format": "fusegraph", "version": 1, "nodes": {…}}'
          value={text}
          onChange={(e) => setText(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === 'Escape') onClose();
          }}
        />
        <div className="fg-dialog-buttons">
          <button type="button" className="fg-button" onClick={onClose}>Cancel</button>
          <button
            type="button"
            className="fg-button fg-button-primary"
            disabled={!text.trim()}
            onClick={() => void onImport(text).then((ok) => ok && onClose())}
          >
            Open graph
          </button>
        </div>
      </div>
    </div>
  );
}
