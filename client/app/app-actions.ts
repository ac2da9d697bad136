import type { Graph } from '../../nodes/graph-format.js';
import { fetchTemplate, fetchTemplates, graphFromPng } from '../api/http.js';
import type { TemplateInfo } from '../../nodes/protocol.js';
import type { ModelList } from '../api/model-list.js';
import type { FuseEditor } from '../editor/fuse-editor.js';
import type { EditorModel } from '../editor/graph-convert.js';
import { importGraph, modelToGraph } from '../editor/graph-convert.js';
import type { NodeRegistry } from '../editor/node-registry.js';
import type { ToastStore } from '../panels/toast-store.js';
import { clearFieldIssues } from '../runs/node-status.js';
import type { NodeStatusStore } from '../runs/node-status-store.js';
import type { RunController } from '../runs/run-controller.js';
import { loadSavedGraph, saveGraph } from './persistence.js';

/** The template opened on a first visit; the first listed one stands in when it is missing. */
const DEMO_TEMPLATE = 'demo-fusion';
const SAVE_DEBOUNCE_MS = 250;
/** Toasts about the graph being opened replace each other: switching templates quickly leaves one, not a pile. */
const OPEN_TOAST = 'open';

/**
 * What the toolbar, shortcuts, drops and pastes do, in one place and independent of React: each entry point of the
 * UI calls one of these.
 */
export class AppActions {
  private editor: FuseEditor | null = null;
  private saveTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    readonly registry: NodeRegistry,
    readonly status: NodeStatusStore,
    readonly toasts: ToastStore,
    readonly runs: RunController,
    readonly models: ModelList,
  ) {}

  attach(editor: FuseEditor | null): void {
    this.editor = editor;
  }

  get ready(): FuseEditor | null {
    return this.editor;
  }

  /** First load: the saved working graph, else the demo template. */
  async openInitialGraph(): Promise<void> {
    const saved = loadSavedGraph();
    if (saved && (await this.importValue(saved, 'saved graph', false))) return;
    try {
      const templates = await fetchTemplates();
      const demo = templates.find((t) => t.name === DEMO_TEMPLATE) ?? templates[0];
      if (demo) await this.loadTemplate(demo.name, false);
    } catch (e) {
      this.toasts.push(`Could not load the demo graph: ${(e as Error).message}`, 'error');
    }
  }

  listTemplates(): Promise<TemplateInfo[]> {
    return fetchTemplates();
  }

  async loadTemplate(name: string, offerUndo = true): Promise<void> {
    try {
      await this.importValue(await fetchTemplate(name), `template “${name}”`, offerUndo);
    } catch (e) {
      this.toasts.push(`Could not load template ${name}: ${(e as Error).message}`, 'error');
    }
  }

  /**
   * Replaces the graph with an untrusted value. Loading wipes undo history, so the toast offers the way back to the
   * graph that was there.
   */
  async importValue(value: unknown, source: string, offerUndo = true): Promise<boolean> {
    const editor = this.editor;
    if (!editor) return false;
    const res = importGraph(value, (t) => this.registry.get(t));
    if (!res.ok) {
      this.toasts.push(`Cannot open ${source}: ${res.errors.slice(0, 3).join('; ')}${res.errors.length > 3 ? ` (+${res.errors.length - 3} more)` : ''}`, 'error');
      return false;
    }
    const previous = editor.toModel();
    await this.show(res.model);
    const notes = [...res.warnings.slice(0, 2), ...(await this.missingModelsNote(res.model))];
    const opened = offerUndo && previous.nodes.length > 0;
    if (opened || notes.length) {
      this.toasts.push(
        [opened ? `Opened ${source}` : '', ...notes].filter(Boolean).join('. '),
        notes.length ? 'info' : 'success',
        { key: OPEN_TOAST, ...(opened ? { action: { label: 'Undo', run: () => void this.restore(previous) } } : {}) },
      );
    }
    return true;
  }

  /** Puts a model on the canvas; what a finished run said belongs to the graph that was there. */
  private async show(model: EditorModel): Promise<void> {
    this.status.replaceAll(new Map());
    this.runs.forgetFinished();
    await this.editor?.load(model);
  }

  private async restore(model: EditorModel): Promise<void> {
    await this.show(model);
  }

  /** Names the model folders a graph wants that the server does not have (the nodes flag them too). */
  private async missingModelsNote(model: EditorModel): Promise<string[]> {
    await this.models.refresh();
    const wanted = model.nodes.flatMap((n) => Object.entries(this.registry.get(n.type)?.params ?? {})
      .filter(([, d]) => d.kind === 'path' && d.root === 'models')
      .map(([name, d]) => ({ value: String(n.params[name] ?? ''), optional: d.kind === 'path' && d.emptyMeans !== undefined }))
      .filter(({ value, optional }) => !(optional && value.trim() === ''))
      .map(({ value }) => value));
    const missing = [...new Set(wanted.filter((p) => !this.models.has(p)))];
    if (!missing.length) return [];
    return [`${missing.length === 1 ? 'Model' : 'Models'} not installed: ${missing.join(', ')}`];
  }

  async importText(text: string, source: string): Promise<boolean> {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      this.toasts.push(`${source} is not JSON: ${(e as Error).message}`, 'error');
      return false;
    }
    return this.importValue(value, source);
  }

  /**
   * Graph JSON pasted on the canvas: into an empty canvas it opens as is (ids kept, like an import); otherwise its
   * nodes are added at the pointer, renamed where ids collide, and the paste is one undo step.
   */
  async pasteText(text: string): Promise<void> {
    const editor = this.editor;
    if (!editor) return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      this.toasts.push('The clipboard holds no graph JSON', 'error');
      return;
    }
    if (!editor.toModel().nodes.length) {
      await this.importValue(value, 'pasted graph', false);
      return;
    }
    const res = importGraph(value, (t) => this.registry.get(t));
    if (!res.ok) {
      this.toasts.push(`Cannot paste: ${res.errors.slice(0, 3).join('; ')}`, 'error');
      return;
    }
    const ids = await editor.insert(res.model, editor.pointer());
    this.toasts.push(`Pasted ${ids.length} node${ids.length === 1 ? '' : 's'}`, 'success');
  }

  /** A dropped or picked file: graph JSON, or a PNG that FuseGraph saved (its graph is embedded). */
  async importFile(file: File): Promise<boolean> {
    if (file.type === 'image/png' || /\.png$/i.test(file.name)) return this.importPng(file, file.name);
    if (file.type === 'application/json' || /\.json$/i.test(file.name) || file.type === '') return this.importText(await file.text(), file.name);
    this.toasts.push(`${file.name}: drop a graph .json or a FuseGraph .png`, 'error');
    return false;
  }

  async importPng(png: Blob, source: string): Promise<boolean> {
    try {
      const graph = await graphFromPng(png);
      if (graph === null) {
        this.toasts.push(`${source} has no FuseGraph graph embedded`, 'error');
        return false;
      }
      return this.importValue(graph, source);
    } catch (e) {
      this.toasts.push(`Could not read ${source}: ${(e as Error).message}`, 'error');
      return false;
    }
  }

  exportGraph(): Graph | null {
    return this.editor ? modelToGraph(this.editor.toModel()) : null;
  }

  downloadGraph(): void {
    const graph = this.exportGraph();
    if (!graph) return;
    const name = (graph.meta?.name ?? 'fusegraph').replace(/[^\w.-]+/g, '-').toLowerCase() || 'fusegraph';
    const url = URL.createObjectURL(new Blob([`${JSON.stringify(graph, null, 2)}\n`], { type: 'application/json' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = `${name}.json`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  async copyGraph(): Promise<void> {
    const graph = this.exportGraph();
    if (!graph) return;
    try {
      await navigator.clipboard.writeText(JSON.stringify(graph, null, 2));
      this.toasts.push('Graph JSON copied', 'success');
    } catch {
      this.toasts.push('The browser refused clipboard access; use Export instead', 'error');
    }
  }

  /** Queues the graph; `front` puts it ahead of every queued run (Ctrl+Shift+Enter). */
  async run(front = false): Promise<void> {
    const graph = this.exportGraph();
    if (!graph) return;
    if (!Object.keys(graph.nodes).length) {
      this.toasts.push('The graph is empty', 'error');
      return;
    }
    try {
      await this.runs.submit(graph, front);
    } catch (e) {
      this.toasts.push(`Run not started: ${(e as Error).message}`, 'error');
    }
  }

  async cancel(runId?: string): Promise<void> {
    try {
      await this.runs.cancel(runId);
    } catch (e) {
      this.toasts.push(`Cancel failed: ${(e as Error).message}`, 'error');
    }
  }

  async newGraph(): Promise<void> {
    const editor = this.editor;
    if (!editor) return;
    const previous = editor.toModel();
    await this.show({ nodes: [], links: [] });
    if (previous.nodes.length) this.toasts.push('Started a new graph', 'info', { key: OPEN_TOAST, action: { label: 'Undo', run: () => void this.restore(previous) } });
  }

  /** Called on every graph change; writes to localStorage shortly after the last one. */
  graphChanged(): void {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null;
      const graph = this.exportGraph();
      if (graph) saveGraph(graph);
    }, SAVE_DEBOUNCE_MS);
  }

  /** Flushes a pending save; the page calls it on unload. */
  flushSave(): void {
    if (!this.saveTimer) return;
    clearTimeout(this.saveTimer);
    this.saveTimer = null;
    const graph = this.exportGraph();
    if (graph) saveGraph(graph);
  }

  paramEdited(nodeId: string, param: string): void {
    this.status.mutate((map) => (clearFieldIssues(map, nodeId, param) ? [nodeId] : []));
  }
}
