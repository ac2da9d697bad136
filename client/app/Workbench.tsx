import { useCallback, useEffect, useMemo, useState, useSyncExternalStore } from 'react';
import { withToken } from '../api/auth.js';
import { ModelList } from '../api/model-list.js';
import type { FileRef } from '../../nodes/protocol.js';
import type { FuseEditor } from '../editor/fuse-editor.js';
import type { NodeRegistry } from '../editor/node-registry.js';
import { Gallery } from '../panels/Gallery.js';
import { Lightbox } from '../panels/Lightbox.js';
import { Palette } from '../panels/Palette.js';
import { PasteDialog } from '../panels/PasteDialog.js';
import type { QueueActions } from '../panels/QueuePanel.js';
import { QueuePanel } from '../panels/QueuePanel.js';
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

/** The editor page: toolbar on top, palette left, canvas in the middle, queue and gallery right (both sides collapse). */
export function Workbench({ registry }: { registry: NodeRegistry }) {
  const actions = useMemo(() => {
    const status = new NodeStatusStore();
    const toasts = new ToastStore();
    const runs = new RunController({
      clientId: clientId(), status, toast: (m, k, key) => toasts.push(m, k, key ? { key } : {}), defOf: (t) => registry.get(t), storage: localStorage,
    });
    return new AppActions(registry, status, toasts, runs, new ModelList());
  }, [registry]);
  const [paletteOpen, setPaletteOpen] = useState(true);
  const [sideOpen, setSideOpen] = useState(true);
  const { runs } = actions;
  const runsView = useSyncExternalStore(runs.subscribe, runs.view);
  const [graphName, setGraphName] = useState<string | undefined>();
  const [empty, setEmpty] = useState(false);
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
    setEmpty(actions.ready?.isEmpty() ?? false);
  }, [actions]);

  useShortcuts(actions, openPaste);

  const toolbar: ToolbarActions = useMemo(() => ({
    run: () => void actions.run(),
    cancel: () => void actions.cancel(),
    resumeQueue: () => void runs.setPaused(false),
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
  }), [actions, runs, openPaste]);

  const queueActions: QueueActions = useMemo(() => {
    const report = (what: string) => (e: Error) => actions.toasts.push(`${what} failed: ${e.message}`, 'error');
    return {
      select: (id) => void runs.select(id),
      cancel: (id) => void actions.cancel(id),
      front: (id) => void runs.moveToFront(id).catch(report('Move to front')),
      clear: () => void runs.clearQueued().catch(report('Clearing the queue')),
      setPaused: (p) => void runs.setPaused(p).catch(report(p ? 'Pausing' : 'Resuming')),
    };
  }, [actions, runs]);

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
      <div className={`fg-main${paletteOpen ? '' : ' fg-palette-closed'}${sideOpen ? '' : ' fg-side-closed'}`}>
        {paletteOpen
          ? <Palette registry={registry} onAdd={(type) => void actions.ready?.addNode(type)} onCollapse={() => setPaletteOpen(false)} />
          : <PanelStrip label="Nodes" side="left" onOpen={() => setPaletteOpen(true)} />}
        <EditorCanvas actions={actions} empty={empty} onReady={onReady} onGraphChange={onGraphChange} onOpenImage={setLightbox} />
        {sideOpen ? (
          <aside className="fg-side" aria-label="Queue and gallery">
            <button type="button" className="fg-icon-button fg-collapse" title="Hide the queue and gallery" data-testid="collapse-side" onClick={() => setSideOpen(false)}>›</button>
            <QueuePanel view={runsView} actions={queueActions} />
            <Gallery view={runsView} onOpen={setLightbox} />
          </aside>
        ) : <PanelStrip label={`Queue${runsView.queue.running.length + runsView.queue.pending.length ? ` (${runsView.queue.running.length + runsView.queue.pending.length})` : ''}`} side="right" onOpen={() => setSideOpen(true)} />}
      </div>
      <Toasts store={actions.toasts} />
      {lightbox && <Lightbox image={lightbox} onClose={() => setLightbox(null)} onOpenGraph={() => void openImageGraph(lightbox)} />}
      {pasteOpen && <PasteDialog onImport={(text) => actions.importText(text, 'pasted JSON')} onClose={() => setPasteOpen(false)} />}
    </div>
  );
}

/** A collapsed side panel: a thin strip that opens it again. */
function PanelStrip({ label, side, onOpen }: { label: string; side: 'left' | 'right'; onOpen: () => void }) {
  return (
    <button type="button" className={`fg-strip fg-strip-${side}`} data-testid={`open-${side}`} title={`Show ${label}`} onClick={onOpen}>
      <span>{label}</span>
    </button>
  );
}
