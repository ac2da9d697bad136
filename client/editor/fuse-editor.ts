import type { ArrangeAppliers, AutoArrangePlugin } from 'rete-auto-arrange-plugin';
import type { NodeMode } from '../../nodes/graph-format.js';
import type { FileRef } from '../../nodes/protocol.js';
import type { ModelList } from '../api/model-list.js';
import type { NodeStatusStore } from '../runs/node-status-store.js';
import type { Box } from './annotations.js';
import { Annotations } from './annotations.js';
import { enableBoxSelect } from './box-select.js';
import { guardConnections } from './connection-guard.js';
import type { LinkDropMenu } from './context-menu-items.js';
import { contextMenuItems } from './context-menu-items.js';
import type { MenuItems, Plugins } from './create-plugins.js';
import { createPlugins } from './create-plugins.js';
import type { EditorModel, GraphMeta, ModelLink, ModelNode, ParamValue, Position } from './graph-convert.js';
import { defaultParams, freshNodeId, modelOrigin, remapForInsert, subModel } from './graph-convert.js';
import type { DraggedSocket } from './link-drop.js';
import { dropCandidates, dropLink, dropPlacement } from './link-drop.js';
import { watchLinkDrops } from './link-drop-watch.js';
import type { NodeRegistry } from './node-registry.js';
import { ParamChangeAction } from './param-change-action.js';
import type { NodeUi } from './node-ui-action.js';
import { NodeUiAction } from './node-ui-action.js';
import { highlightCompatibleSockets } from './pick-highlight.js';
import { fitTransform, freeSpot } from './placement.js';
import { samplerNoiseSource, scheduleRole, scheduleSegments } from './schedule.js';
import type { Schemes } from './schemes.js';
import { FuseConnection, FuseNode } from './schemes.js';
import { RENAME_EVENT } from './views/FuseNodeView.js';

export type ToastKind = 'info' | 'error' | 'success';

export interface EditorServices {
  readonly registry: NodeRegistry;
  readonly status: NodeStatusStore;
  readonly toast: (message: string, kind?: ToastKind) => void;
  /** The graph changed (structure, params or positions); the app persists it. */
  readonly onChange: () => void;
  /** A widget edit, so the app can drop validation issues about that field. */
  readonly onParamEdited: (nodeId: string, param: string) => void;
  readonly openImage: (image: FileRef) => void;
  readonly models: ModelList;
}

interface Arranger {
  readonly plugin: AutoArrangePlugin<Schemes>;
  readonly applier: () => ArrangeAppliers.TransitionApplier<Schemes, never>;
}

/** Consecutive edits of the same field within this window are one undo step. */
const PARAM_MERGE_MS = 1500;
const DUPLICATE_OFFSET = { x: 40, y: 40 };

/**
 * The graph editor: rete plus FuseGraph's rules, seen by the app through graph-level operations on the
 * editor-neutral model. Nothing outside `client/editor/` touches rete.
 */
export class FuseEditor {
  private readonly p: Plugins;
  private meta: GraphMeta | undefined;
  private readonly annotations: Annotations;
  private revision = 0;
  private readonly revisionListeners = new Set<() => void>();
  private loading = false;
  private refusedWhileLoading: string[] = [];
  private lastParamEdit: { action: ParamChangeAction; at: number } | null = null;
  private arranger: Promise<Arranger> | null = null;
  private pendingLinkDrop: LinkDropMenu | null = null;
  private readonly unbind: (() => void)[] = [];

  constructor(container: HTMLElement, private readonly services: EditorServices) {
    const menuItems: MenuItems = contextMenuItems({
      registry: services.registry,
      pointer: () => this.pointer(),
      addNode: (type, at) => void this.addNode(type, at),
      duplicate: (ids) => void this.insert(subModel(this.toModel(), new Set(ids))),
      remove: (ids) => void this.remove(ids),
      removeLink: (id) => void this.p.editor.removeConnection(id),
      selectedIds: () => this.selectedIds(),
      takeLinkDrop: () => {
        const drop = this.pendingLinkDrop;
        this.pendingLinkDrop = null;
        return drop;
      },
      addNote: (at) => this.addNote(at),
      toggleMode: (ids, mode) => this.toggleMode(mode, ids),
      colour: (ids, color) => this.setNodeUi(ids, () => ({ color })),
      group: (ids) => this.groupNodes(ids),
    });
    this.p = createPlugins(
      container,
      {
        status: services.status,
        setParam: (id, name, v) => this.setParam(id, name, v),
        openImage: services.openImage,
        models: services.models,
        setNodeUi: (id, patch) => this.setNodeUi([id], () => patch),
        nodeResized: () => this.annotations.render(),
        graph: { subscribe: (l) => this.subscribeGraph(l), revision: () => this.graphRevision() },
        schedule: (id) => {
          const model = this.toModel();
          const node = model.nodes.find((n) => n.id === id);
          const def = node && this.services.registry.get(node.type);
          const role = def && scheduleRole(def);
          const start = role === 'switch' ? id : role === 'sampler' ? samplerNoiseSource(model, id) : undefined;
          return start ? scheduleSegments(model, start, (t) => this.services.registry.get(t)) : [];
        },
        setParamFromView: (id, name, value) => {
          this.setParam(id, name, value);
          const node = this.p.editor.getNode(id);
          if (!node) return;
          node.paramRevision++;
          void this.p.area.update('node', id);
        },
      },
      menuItems,
    );
    this.annotations = new Annotations({
      layer: this.p.area.area.content.holder,
      nodeBox: (id) => this.nodeBox(id),
      zoom: () => this.p.area.area.transform.k,
      moveNodes: async (ids, dx, dy) => {
        // rete moves every selected node along with a moved one; the group moves each member itself.
        if (this.selectedIds().length) await this.p.selector.unselectAll();
        for (const id of ids) {
          const pos = this.p.area.nodeViews.get(id)?.position;
          if (pos) await this.p.area.translate(id, { x: pos.x + dx, y: pos.y + dy });
        }
      },
      changed: () => {
        if (!this.loading) this.graphChanged();
      },
    });
    guardConnections(this.p.editor, this.p.connection, (reason) => {
      if (this.loading) this.refusedWhileLoading.push(reason);
      else services.toast(reason, 'error');
    });
    this.unbind.push(
      highlightCompatibleSockets(this.p.editor, this.p.connection, container),
      this.openSearchOnDoubleClick(container),
      renameOnDoublePress(container),
      watchLinkDrops(this.p.editor, this.p.connection, container, (dragged, x, y) => this.openLinkDropMenu(dragged, x, y)),
      enableBoxSelect(this.p.area, {
        boxes: () => this.nodes().map((n) => ({
          id: n.id, position: this.p.area.nodeViews.get(n.id)?.position ?? { x: 0, y: 0 }, width: n.width, height: n.height,
        })),
        toArea: (x, y) => this.clientToArea(x, y),
        select: (ids, accumulate) => this.selectNodes(ids, accumulate),
      }),
    );
    const changed = () => {
      if (!this.loading) this.graphChanged();
    };
    this.p.editor.addPipe((ctx) => {
      if (['nodecreated', 'noderemoved', 'connectioncreated', 'connectionremoved'].includes(ctx.type)) changed();
      if (ctx.type === 'noderemoved' || ctx.type === 'nodecreated') this.annotations.render();
      return ctx;
    });
    this.p.area.addPipe((ctx) => {
      if (ctx.type === 'nodetranslated') {
        changed();
        this.annotations.render();
      }
      return ctx;
    });
  }

  /** Every change of the graph: the app persists it, and views that read the wiring (timelines) refresh. */
  private graphChanged(): void {
    this.revision++;
    for (const l of this.revisionListeners) l();
    this.services.onChange();
  }

  readonly subscribeGraph = (l: () => void): (() => void) => {
    this.revisionListeners.add(l);
    return () => this.revisionListeners.delete(l);
  };

  readonly graphRevision = (): number => this.revision;

  destroy(): void {
    for (const unbind of this.unbind) unbind();
    this.annotations.destroy();
    this.p.destroy();
  }

  /**
   * Double-click on bare canvas opens the node search there, as in ComfyUI (rete would zoom instead). Listening on
   * the window in the capture phase runs before the area's own handler, which is then stopped. Widgets inside nodes
   * get no dblclick then; text selection by double-click is the browser's default action and still works.
   */
  private openSearchOnDoubleClick(container: HTMLElement): () => void {
    const onDouble = (e: MouseEvent) => {
      const target = e.target instanceof Element ? e.target : null;
      if (!target || !container.contains(target) || target.closest('.fg-menu, .fg-group, .fg-note, [data-testid="minimap"]')) return;
      // No double-click zoom on nodes either: it would fire when renaming a title.
      e.stopPropagation();
      if (target.closest('.fg-node')) return;
      e.preventDefault();
      this.p.area.area.setPointerFrom(e);
      void this.p.area.emit({ type: 'contextmenu', data: { event: new MouseEvent('contextmenu', { clientX: e.clientX, clientY: e.clientY }), context: 'root' } });
    };
    window.addEventListener('dblclick', onDouble, true);
    return () => window.removeEventListener('dblclick', onDouble, true);
  }

  private nodeBox(id: string): Box | null {
    const node = this.p.editor.getNode(id);
    const pos = this.p.area.nodeViews.get(id)?.position;
    return node && pos ? { x: pos.x, y: pos.y, width: node.width, height: node.height } : null;
  }

  graphMeta(): GraphMeta | undefined {
    return this.meta;
  }

  isEmpty(): boolean {
    return this.nodes().length === 0 && this.annotations.getNotes().length === 0;
  }

  private nodes(): FuseNode[] {
    return this.p.editor.getNodes();
  }

  toModel(): EditorModel {
    const nodes: ModelNode[] = this.nodes().map((n) => {
      const pos = this.p.area.nodeViews.get(n.id)?.position ?? { x: 0, y: 0 };
      return {
        id: n.id, type: n.type, params: { ...n.params }, position: { x: pos.x, y: pos.y },
        ...(n.mode ? { mode: n.mode } : {}),
        ...(n.title !== undefined ? { title: n.title } : {}),
        ...(n.color ? { color: n.color } : {}),
        ...(n.collapsed ? { collapsed: true } : {}),
      };
    });
    const links: ModelLink[] = this.p.editor.getConnections().map((c) => ({
      source: c.source, sourceOutput: c.sourceOutput, target: c.target, targetInput: c.targetInput,
    }));
    const ids = new Set(nodes.map((n) => n.id));
    const groups = this.annotations.getGroups().map((g) => ({ ...g, nodes: g.nodes.filter((id) => ids.has(id)) })).filter((g) => g.nodes.length);
    const notes = this.annotations.getNotes();
    return {
      ...(this.meta ? { meta: this.meta } : {}), nodes, links,
      ...(groups.length ? { groups } : {}),
      ...(notes.length ? { notes } : {}),
    };
  }

  /** Replaces the graph and fits it readably. History restarts: undoing into a different document would be surprising. */
  async load(model: EditorModel): Promise<void> {
    this.loading = true;
    this.refusedWhileLoading = [];
    try {
      await this.p.editor.clear();
      this.meta = model.meta;
      await this.addModel(model);
      this.annotations.set(model.groups ?? [], model.notes ?? []);
      this.p.history.clear();
      this.lastParamEdit = null;
    } finally {
      this.loading = false;
    }
    // A hand-edited file may link mismatched sockets; those links are left out, and said so once.
    const refused = this.refusedWhileLoading;
    if (refused.length) this.services.toast(`Left out ${refused.length} invalid link${refused.length === 1 ? '' : 's'}: ${refused[0]}`, 'error');
    await this.zoomToFit(true);
    this.graphChanged();
  }

  /** Adds a model's nodes and links next to the existing ones (paste, duplicate); ids that collide are renamed. */
  async insert(model: EditorModel, at?: Position): Promise<string[]> {
    const origin = modelOrigin(model);
    const offset = at ? { x: at.x - origin.x, y: at.y - origin.y } : DUPLICATE_OFFSET;
    const remapped = remapForInsert(model, new Set(this.nodes().map((n) => n.id)), offset);
    this.p.history.separate();
    const ids = await this.addModel(remapped);
    await this.p.selector.unselectAll();
    for (const id of ids) await this.p.selection.select(id, true);
    return ids;
  }

  private async addModel(model: EditorModel): Promise<string[]> {
    const added: string[] = [];
    for (const m of model.nodes) {
      const def = this.services.registry.get(m.type);
      if (!def) continue;
      const node = new FuseNode(def, m.id, { ...defaultParams(def), ...m.params });
      node.mode = m.mode;
      node.title = m.title;
      node.color = m.color;
      node.collapsed = m.collapsed ?? false;
      await this.p.editor.addNode(node);
      await this.p.area.translate(node.id, m.position);
      added.push(node.id);
    }
    for (const l of model.links) {
      const source = this.p.editor.getNode(l.source);
      const target = this.p.editor.getNode(l.target);
      if (!source || !target || !source.outputs[l.sourceOutput] || !target.inputs[l.targetInput]) continue;
      await this.p.editor.addConnection(new FuseConnection(source, l.sourceOutput, target, l.targetInput));
    }
    return added;
  }

  /** Adds a node at `at` (a drop, a menu), or near the view centre where it covers no other node (palette clicks). */
  async addNode(type: string, at?: Position): Promise<string | null> {
    if (at) return this.placeNode(type, (node) => ({ x: at.x - node.width / 2, y: at.y - 40 }));
    const centre = this.viewCentre();
    const taken = this.nodes().map((n) => this.nodeBox(n.id)).filter((b): b is Box => b !== null);
    return this.placeNode(type, (node) => freeSpot({ x: centre.x - node.width / 2, y: centre.y - node.height / 2 }, node, taken));
  }

  /** Bypass or mute (Ctrl+B, Ctrl+M) the selection; when every selected node already is, it runs again. */
  toggleMode(mode: NodeMode, ids: readonly string[] = this.selectedIds()): void {
    const nodes = ids.map((id) => this.p.editor.getNode(id)).filter((n): n is FuseNode => Boolean(n));
    if (!nodes.length) return;
    const all = nodes.every((n) => n.mode === mode);
    this.setNodeUi(nodes.map((n) => n.id), () => ({ mode: all ? undefined : mode }));
  }

  /** Title, colour, collapse or mode of some nodes, as one undoable step. */
  setNodeUi(ids: readonly string[], patch: (node: FuseNode) => NodeUi): void {
    const changes = ids.flatMap((id) => {
      const node = this.p.editor.getNode(id);
      if (!node) return [];
      const before: NodeUi = { mode: node.mode, title: node.title, color: node.color, collapsed: node.collapsed };
      return [{ id, before, after: { ...before, ...patch(node) } }];
    });
    if (!changes.length) return;
    const action = new NodeUiAction(changes, (id, ui) => this.applyNodeUi(id, ui));
    action.redo();
    this.p.history.add(action);
  }

  private applyNodeUi(id: string, ui: NodeUi): void {
    const node = this.p.editor.getNode(id);
    if (!node) return;
    node.mode = ui.mode;
    node.title = ui.title;
    node.color = ui.color;
    node.collapsed = ui.collapsed ?? false;
    void this.p.area.update('node', id);
    this.graphChanged();
  }

  /** Frames the selection in a new group (Ctrl+G). */
  groupSelected(): void {
    this.groupNodes(this.selectedIds());
  }

  private groupNodes(ids: readonly string[]): void {
    if (!ids.length) return;
    const taken = new Set(this.annotations.getGroups().map((g) => g.id));
    this.annotations.addGroup({ id: freshNodeId('Group', taken), title: 'Group', nodes: [...ids] });
  }

  /** A note where the pointer is (background menu). */
  addNote(at: Position): void {
    const taken = new Set(this.annotations.getNotes().map((n) => n.id));
    this.annotations.addNote({ id: freshNodeId('Note', taken), text: '', position: at });
  }

  /** Adds a node of `type` with its top-left corner where `place` says, and makes it the selection. */
  private async placeNode(type: string, place: (node: FuseNode) => Position): Promise<string | null> {
    const def = this.services.registry.get(type);
    if (!def) return null;
    const id = freshNodeId(type, new Set(this.nodes().map((n) => n.id)));
    const node = new FuseNode(def, id, defaultParams(def));
    this.p.history.separate();
    await this.p.editor.addNode(node);
    await this.p.area.translate(id, place(node));
    await this.p.selector.unselectAll();
    await this.p.selection.select(id, false);
    return id;
  }

  /**
   * A link let go on empty canvas: the background menu opens at that point listing only the node types that can take
   * it (nothing opens when none can). The plugin builds its menu from the `contextmenu` signal, so one is sent with
   * the release point; the pending drop turns that one menu into the filtered list.
   */
  private openLinkDropMenu(dragged: DraggedSocket, clientX: number, clientY: number): void {
    const defs = this.services.registry.groups().flatMap((g) => g.defs);
    const candidates = dropCandidates(defs, dragged);
    if (!candidates.length) return;
    const at = this.clientToArea(clientX, clientY);
    this.pendingLinkDrop = {
      candidates,
      choose: (c) => void this.addLinkedNode(c.def.type, c.key, dragged, at),
    };
    const event = new MouseEvent('contextmenu', { clientX, clientY });
    void this.p.area.emit({ type: 'contextmenu', data: { event, context: 'root' } }).finally(() => {
      this.pendingLinkDrop = null;
    });
  }

  /**
   * Creates the chosen node at the drop point and links socket `key` of it to the dragged socket. The link goes
   * through the editor's pipe, so the usual rules still decide (type, one link per input, no cycle).
   */
  private async addLinkedNode(type: string, key: string, dragged: DraggedSocket, at: Position): Promise<void> {
    const id = await this.placeNode(type, (node) => dropPlacement(dragged.side, at, node.width));
    if (!id) return;
    const l = dropLink(dragged, id, key);
    const source = this.p.editor.getNode(l.source);
    const target = this.p.editor.getNode(l.target);
    // The dragged node may have been deleted while the menu was open.
    if (!source || !target) return;
    await this.p.editor.addConnection(new FuseConnection(source, l.sourceOutput, target, l.targetInput));
  }

  selectedIds(): string[] {
    return this.nodes().filter((n) => n.selected).map((n) => n.id);
  }

  selectionModel(): EditorModel {
    const ids = new Set(this.selectedIds());
    return subModel(this.toModel(), ids.size ? ids : new Set(this.nodes().map((n) => n.id)));
  }

  /** Selects `ids`, after clearing the selection unless `accumulate`. */
  async selectNodes(ids: readonly string[], accumulate: boolean): Promise<void> {
    if (!accumulate) await this.p.selector.unselectAll();
    for (const id of ids) await this.p.selection.select(id, true);
  }

  async selectAll(): Promise<void> {
    for (const n of this.nodes()) await this.p.selection.select(n.id, true);
  }

  async deleteSelected(): Promise<void> {
    await this.remove(this.selectedIds());
  }

  async remove(ids: readonly string[]): Promise<void> {
    if (!ids.length) return;
    this.p.history.separate();
    const set = new Set(ids);
    for (const c of this.p.editor.getConnections()) {
      if (set.has(c.source) || set.has(c.target)) await this.p.editor.removeConnection(c.id);
    }
    for (const id of ids) {
      await this.p.selection.unselect(id);
      await this.p.editor.removeNode(id);
    }
  }

  async duplicateSelected(): Promise<void> {
    const ids = new Set(this.selectedIds());
    if (!ids.size) return;
    await this.insert(subModel(this.toModel(), ids));
  }

  async undo(): Promise<void> {
    await this.p.history.undo();
  }

  async redo(): Promise<void> {
    await this.p.history.redo();
  }

  /** ELK is most of the bundle's weight and only this button needs it, so it loads on first use. */
  private arrangePlugin(): Promise<Arranger> {
    this.arranger ??= import('rete-auto-arrange-plugin').then(({ AutoArrangePlugin, Presets, ArrangeAppliers }) => {
      const plugin = new AutoArrangePlugin<Schemes>();
      plugin.addPreset(Presets.classic.setup());
      this.p.area.use(plugin);
      return {
        plugin,
        applier: () => new ArrangeAppliers.TransitionApplier<Schemes, never>({ duration: 300, timingFunction: (t) => t * (2 - t) }),
      };
    });
    return this.arranger;
  }

  async arrange(): Promise<void> {
    const { plugin, applier } = await this.arrangePlugin();
    this.p.history.separate();
    await plugin.layout({
      options: { 'elk.spacing.nodeNode': '60', 'elk.layered.spacing.nodeNodeBetweenLayers': '80' },
      applier: applier(),
    });
    await this.zoomToFit();
  }

  /**
   * Fits the graph (nodes and notes) into the free canvas. With `readable`, a graph that would need text smaller than
   * READABLE_ZOOM allows is shown from its left part at 100 % instead, and the minimap tells the rest; F fits all.
   */
  async zoomToFit(readable = false): Promise<void> {
    // Nodes measure themselves once React has laid them out; fitting on the first guesses would misplace the view.
    await nextFrame();
    const boxes = [...this.nodes().map((n) => this.nodeBox(n.id)).filter((b): b is Box => b !== null), ...this.annotations.noteBoxes()];
    if (!boxes.length) return;
    const rect = this.p.area.container.getBoundingClientRect();
    const { k, x, y } = fitTransform(boxes, { width: rect.width, height: rect.height }, readable);
    await this.p.area.area.zoom(k, 0, 0);
    await this.p.area.area.translate(x, y);
    this.annotations.render();
    // Counts fits on the canvas element, so a test (or a person in devtools) can tell a fit has landed.
    this.p.area.container.dataset.fits = String(Number(this.p.area.container.dataset.fits ?? 0) + 1);
  }


  /** A widget edit: applied at once, recorded for undo, folded with the previous edit of the same field. */
  setParam(nodeId: string, name: string, value: ParamValue): void {
    const node = this.p.editor.getNode(nodeId);
    if (!node) return;
    const previous = node.params[name] ?? null;
    node.params[name] = value;
    const now = Date.now();
    const last = this.lastParamEdit;
    const recent = this.p.history.getRecent(PARAM_MERGE_MS).at(-1)?.action;
    if (last && recent === last.action && last.action.nodeId === nodeId && last.action.param === name && now - last.at < PARAM_MERGE_MS) {
      last.action.next = value;
      last.at = now;
    } else {
      const action = new ParamChangeAction(nodeId, name, previous, value, (id, p, v) => this.applyParam(id, p, v));
      this.p.history.add(action);
      this.lastParamEdit = { action, at: now };
    }
    this.services.onParamEdited(nodeId, name);
    this.graphChanged();
  }

  /** Undo/redo of a widget edit: the widget shows the value only after the node re-renders. */
  private applyParam(nodeId: string, name: string, value: ParamValue): void {
    const node = this.p.editor.getNode(nodeId);
    if (!node) return;
    node.params[name] = value;
    node.paramRevision++;
    void this.p.area.update('node', nodeId);
    this.graphChanged();
  }

  /** Area coordinates of the last pointer position over the canvas. */
  pointer(): Position {
    const { x, y } = this.p.area.area.pointer;
    return { x, y };
  }

  /** Area coordinates of the middle of the visible canvas. */
  viewCentre(): Position {
    const rect = this.p.area.container.getBoundingClientRect();
    return this.clientToArea(rect.left + rect.width / 2, rect.top + rect.height / 2);
  }

  clientToArea(clientX: number, clientY: number): Position {
    const rect = this.p.area.container.getBoundingClientRect();
    const { x, y, k } = this.p.area.area.transform;
    return { x: (clientX - rect.left - x) / k, y: (clientY - rect.top - y) / k };
  }
}

/** Two presses on one node's title within this time are a double-click. */
const DOUBLE_PRESS_MS = 500;

/**
 * A double-click on a node's title renames it. A press on a node re-orders its element for rete, so the browser
 * sends neither click nor dblclick there: the second press on the same title in time is the double-click.
 */
function renameOnDoublePress(container: HTMLElement): () => void {
  let last: { node: string; at: number } | null = null;
  const onDown = (e: PointerEvent) => {
    const title = e.target instanceof Element && container.contains(e.target) ? e.target.closest('.fg-node-title') : null;
    const node = title?.closest('[data-node-id]')?.getAttribute('data-node-id') ?? null;
    if (title && node && last?.node === node && e.timeStamp - last.at < DOUBLE_PRESS_MS) {
      last = null;
      e.stopPropagation();
      e.preventDefault();
      title.dispatchEvent(new CustomEvent(RENAME_EVENT));
      return;
    }
    last = node ? { node, at: e.timeStamp } : null;
  };
  window.addEventListener('pointerdown', onDown, true);
  return () => window.removeEventListener('pointerdown', onDown, true);
}

function nextFrame(): Promise<void> {
  return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => resolve())));
}
