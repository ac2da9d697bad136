import { useCallback, useEffect, useMemo, useState, useSyncExternalStore } from 'react';
import { withToken } from '../api/auth.js';
import type { FileRef } from '../../nodes/protocol.js';
import type { FuseEditor } from '../editor/fuse-editor.js';
import type { NodeRegistry } from '../editor/node-registry.js';
import { Gallery } from '../panels/Gallery.js';
import { Lightbox } from '../panels/Lightbox.js';
import { Palette } from '../panels/Palette.js';
import { PasteDialog } from '../panels/PasteDialog.js';
import { Toasts } from '../panels/Toasts.js';
import { ToastStore } from '../panels/toast-store.js';
import type { ToolbarActions } from '../panels/Toolbar.js';
import { Toolbar } from '../panels/Toolbar.js';
import { NodeStatusStore } from '../runs/node-status-store.js';
import { RunController } from '../runs/run-controller.js';
import { AppActions } from './app-actions.js';
import { EditorCanvas } from './EditorCanvas.js';
import { clientId } from './persistence.js';
import { useShortcuts } from './use-shortcuts.js';

/** The editor page: toolbar on top, palette left, canvas in the middle, gallery right. */
export function Workbench({ registry }: { registry: NodeRegistry }) {
  const actions = useMemo(() => {
    const status = new NodeStatusStore();
    const toasts = new ToastStore();
    const runs = new RunController({ clientId: clientId(), status, toast: (m, k) => toasts.push(m, k), storage: localStorage });
    return new AppActions(registry, status, toasts, runs);
  }, [registry]);
  const { runs } = actions;
  const runsView = useSyncExternalStore(runs.subscribe, runs.view);
  const [graphName, setGraphName] = useState<string | undefined>();
  const [lightbox, setLightbox] = useState<FileRef | null>(null);
  const [pasteOpen, setPasteOpen] = useState(false);
  const openPaste = useCallback(() => setPasteOpen(true), []);

  useEffect(() => {
    runs.start();
    const flush = () => actions.flushSave();
    window.addEventListener('beforeunload', flush);
    return () => {
      window.removeEventListener('beforeunload', flush);
      flush();
      runs.dispose();
    };
  }, [actions, runs]);

  const onReady = useCallback((editor: FuseEditor | null) => {
    actions.attach(editor);
    if (editor) void actions.openInitialGraph().then(() => runs.restore());
  }, [actions, runs]);

  const onGraphChange = useCallback(() => {
    actions.graphChanged();
    setGraphName(actions.ready?.graphMeta()?.name);
  }, [actions]);

  useShortcuts(actions, openPaste);

  const toolbar: ToolbarActions = useMemo(() => ({
    run: () => void actions.run(),
    cancel: () => void actions.cancel(),
    listTemplates: () => actions.listTemplates(),
    loadTemplate: (name) => void actions.loadTemplate(name),
    newGraph: () => void actions.newGraph(),
    importFile: (f) => void actions.importFile(f),
    exportGraph: () => actions.downloadGraph(),
    copyGraph: () => void actions.copyGraph(),
    pasteGraph: openPaste,
    undo: () => void actions.ready?.undo(),
    redo: () => void actions.ready?.redo(),
    arrange: () => void actions.ready?.arrange(),
    fit: () => void actions.ready?.zoomToFit(),
  }), [actions, openPaste]);

  const openImageGraph = async (image: FileRef) => {
    try {
      const blob = await (await fetch(withToken(image.url))).blob();
      if (await actions.importPng(blob, image.name)) setLightbox(null);
    } catch (e) {
      actions.toasts.push(`Could not fetch ${image.name}: ${(e as Error).message}`, 'error');
    }
  };

  return (
    <div className="fg-app">
      <Toolbar actions={toolbar} runs={runsView} graphName={graphName} />
      <div className="fg-main">
        <Palette registry={registry} onAdd={(type) => void actions.ready?.addNode(type)} />
        <EditorCanvas actions={actions} onReady={onReady} onGraphChange={onGraphChange} onOpenImage={setLightbox} />
        <Gallery view={runsView} onOpen={setLightbox} />
      </div>
      <Toasts store={actions.toasts} />
      {lightbox && <Lightbox image={lightbox} onClose={() => setLightbox(null)} onOpenGraph={() => void openImageGraph(lightbox)} />}
      {pasteOpen && <PasteDialog onImport={(text) => actions.importText(text, 'pasted JSON')} onClose={() => setPasteOpen(false)} />}
    </div>
  );
}
