import { useEffect, useRef, useState } from 'react';
import type { FileRef } from '../../nodes/protocol.js';
import { FuseEditor } from '../editor/fuse-editor.js';
import { NODE_DRAG_TYPE } from '../panels/Palette.js';
import type { AppActions } from './app-actions.js';

interface Props {
  readonly actions: AppActions;
  /** The graph has nothing in it: the canvas says how to add nodes. */
  readonly empty: boolean;
  readonly onReady: (editor: FuseEditor | null) => void;
  readonly onGraphChange: () => void;
  readonly onOpenImage: (image: FileRef) => void;
}

/**
 * The rete canvas, plus what can be dropped on it: palette entries (placed where dropped), graph .json files and
 * FuseGraph PNGs (opened).
 */
export function EditorCanvas({ actions, empty, onReady, onGraphChange, onOpenImage }: Props) {
  const ref = useRef<HTMLDivElement>(null);
  const editorRef = useRef<FuseEditor | null>(null);
  const [dropping, setDropping] = useState(false);
  // The editor outlives renders; these keep its callbacks pointing at the latest props without recreating it.
  const latest = useRef({ onGraphChange, onOpenImage });
  latest.current = { onGraphChange, onOpenImage };

  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const editor = new FuseEditor(el, {
      registry: actions.registry,
      status: actions.status,
      toast: (m, k) => actions.toasts.push(m, k),
      onChange: () => latest.current.onGraphChange(),
      onParamEdited: (id, p) => actions.paramEdited(id, p),
      openImage: (img) => latest.current.onOpenImage(img),
      models: actions.models,
    });
    editorRef.current = editor;
    onReady(editor);
    // Focusing a widget outside the visible part of the canvas makes the browser scroll the (overflow: hidden)
    // container to reveal it, which would shift the whole view under the area plugin's coordinates.
    const unscroll = (e: Event) => {
      const t = e.target as HTMLElement;
      if (t.scrollLeft || t.scrollTop) t.scrollTo(0, 0);
    };
    const wrap = el.parentElement;
    el.addEventListener('scroll', unscroll);
    wrap?.addEventListener('scroll', unscroll);
    return () => {
      el.removeEventListener('scroll', unscroll);
      wrap?.removeEventListener('scroll', unscroll);
      onReady(null);
      editorRef.current = null;
      editor.destroy();
    };
  }, [actions, onReady]);

  const accepts = (e: React.DragEvent) => e.dataTransfer.types.includes('Files') || e.dataTransfer.types.includes(NODE_DRAG_TYPE);

  return (
    <div
      className={`fg-canvas-wrap${dropping ? ' fg-dropping' : ''}`}
      onDragOver={(e) => {
        if (!accepts(e)) return;
        e.preventDefault();
        e.dataTransfer.dropEffect = 'copy';
        if (e.dataTransfer.types.includes('Files')) setDropping(true);
      }}
      onDragLeave={(e) => {
        if (!e.currentTarget.contains(e.relatedTarget as Node | null)) setDropping(false);
      }}
      onDrop={(e) => {
        setDropping(false);
        const editor = editorRef.current;
        if (!editor || !accepts(e)) return;
        e.preventDefault();
        const type = e.dataTransfer.getData(NODE_DRAG_TYPE);
        if (type) {
          void editor.addNode(type, editor.clientToArea(e.clientX, e.clientY));
          return;
        }
        const file = e.dataTransfer.files[0];
        if (file) void actions.importFile(file);
      }}
    >
      <div ref={ref} className="fg-canvas" data-testid="canvas" />
      {dropping && <div className="fg-drop-hint">Drop a graph .json or a FuseGraph .png to open it</div>}
      {empty && !dropping && (
        <div className="fg-empty-hint" data-testid="empty-hint">
          Double-click the canvas to search nodes, drag one from the palette, or open a graph from Templates.
        </div>
      )}
    </div>
  );
}
