import type { ModelGroup, ModelNote, Position } from './graph-convert.js';

export interface Box {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

/** Room around the member nodes of a group, and above them for its title bar. */
const GROUP_PAD = 16;
const GROUP_TITLE = 30;
const NOTE_WIDTH = 240;
const NOTE_HEIGHT = 120;

/** A group's frame: its members' bounding box plus padding; null when none of them is on the canvas. */
export function groupBounds(members: readonly (Box | null)[]): Box | null {
  const boxes = members.filter((b): b is Box => b !== null);
  if (!boxes.length) return null;
  const left = Math.min(...boxes.map((b) => b.x)) - GROUP_PAD;
  const top = Math.min(...boxes.map((b) => b.y)) - GROUP_PAD - GROUP_TITLE;
  const right = Math.max(...boxes.map((b) => b.x + b.width)) + GROUP_PAD;
  const bottom = Math.max(...boxes.map((b) => b.y + b.height)) + GROUP_PAD;
  return { x: left, y: top, width: right - left, height: bottom - top };
}

export interface AnnotationHost {
  /** The layer the frames live in: the area's transformed content, so they pan and zoom with the nodes. */
  readonly layer: HTMLElement;
  readonly nodeBox: (id: string) => Box | null;
  readonly zoom: () => number;
  readonly moveNodes: (ids: readonly string[], dx: number, dy: number) => Promise<void>;
  readonly changed: () => void;
}

/**
 * Groups (titled frames that move their nodes) and notes (text on the canvas that never runs), drawn as plain DOM
 * under the nodes. rete knows nothing of them: they are part of the graph document, not of the node graph.
 */
export class Annotations {
  private groups: ModelGroup[] = [];
  private notes: ModelNote[] = [];
  private readonly root: HTMLDivElement;

  constructor(private readonly host: AnnotationHost) {
    this.root = document.createElement('div');
    this.root.className = 'fg-annotations';
    host.layer.insertBefore(this.root, host.layer.firstChild);
  }

  destroy(): void {
    this.root.remove();
  }

  set(groups: readonly ModelGroup[], notes: readonly ModelNote[]): void {
    this.groups = [...groups];
    this.notes = [...notes];
    this.render();
  }

  getGroups(): readonly ModelGroup[] {
    return this.groups;
  }

  getNotes(): readonly ModelNote[] {
    return this.notes;
  }

  addGroup(group: ModelGroup): void {
    this.groups.push(group);
    this.render();
    this.host.changed();
  }

  addNote(note: ModelNote): void {
    this.notes.push(note);
    this.render();
    this.host.changed();
  }

  /** Boxes of the notes, for fitting the view. */
  noteBoxes(): Box[] {
    return this.notes.map((n) => ({ x: n.position.x, y: n.position.y, width: n.width ?? NOTE_WIDTH, height: n.height ?? NOTE_HEIGHT }));
  }

  /** Redraws every frame; called whenever a node moves, resizes or goes. */
  render(): void {
    const root = this.root;
    const keep = new Set<Element>();
    for (const g of this.groups) {
      const bounds = groupBounds(g.nodes.map((id) => this.host.nodeBox(id)));
      if (!bounds) continue;
      const el = this.element(`group:${g.id}`, () => this.groupElement(g.id));
      place(el, bounds);
      if (g.color) el.style.setProperty('--group-color', g.color);
      const title = el.querySelector<HTMLElement>('.fg-group-title-text');
      if (title && title.textContent !== g.title) title.textContent = g.title;
      keep.add(el);
    }
    for (const n of this.notes) {
      const el = this.element(`note:${n.id}`, () => this.noteElement(n.id));
      place(el, { x: n.position.x, y: n.position.y, width: n.width ?? NOTE_WIDTH, height: n.height ?? NOTE_HEIGHT });
      if (n.color) el.style.setProperty('--note-color', n.color);
      const text = el.querySelector('textarea');
      if (text && document.activeElement !== text && text.value !== n.text) text.value = n.text;
      keep.add(el);
    }
    for (const child of [...root.children]) if (!keep.has(child)) child.remove();
  }

  private element(key: string, make: () => HTMLElement): HTMLElement {
    const found = [...this.root.children].find((c) => (c as HTMLElement).dataset.key === key) as HTMLElement | undefined;
    if (found) return found;
    const el = make();
    el.dataset.key = key;
    this.root.appendChild(el);
    return el;
  }

  private groupElement(id: string): HTMLElement {
    const el = document.createElement('div');
    el.className = 'fg-group';
    el.dataset.groupId = id;
    el.innerHTML = '<div class="fg-group-title"><span class="fg-group-title-text"></span><button type="button" class="fg-group-remove" title="Ungroup (the nodes stay)">✕</button></div>';
    const bar = el.querySelector<HTMLElement>('.fg-group-title')!;
    this.draggable(bar, (dx, dy) => {
      const g = this.groups.find((x) => x.id === id);
      return g ? this.host.moveNodes(g.nodes, dx, dy) : Promise.resolve();
    });
    bar.addEventListener('dblclick', (e) => {
      e.stopPropagation();
      const g = this.groups.find((x) => x.id === id);
      if (!g) return;
      const input = document.createElement('input');
      input.className = 'fg-input fg-group-rename';
      input.value = g.title;
      const text = bar.querySelector<HTMLElement>('.fg-group-title-text')!;
      text.replaceWith(input);
      input.focus();
      input.select();
      const done = (commit: boolean) => {
        input.replaceWith(text);
        if (commit && input.value.trim()) {
          this.groups = this.groups.map((x) => (x.id === id ? { ...x, title: input.value.trim() } : x));
          this.host.changed();
        }
        this.render();
      };
      input.addEventListener('keydown', (k) => {
        k.stopPropagation();
        if (k.key === 'Enter') done(true);
        if (k.key === 'Escape') done(false);
      });
      input.addEventListener('blur', () => done(true), { once: true });
      input.addEventListener('pointerdown', (p) => p.stopPropagation());
    });
    el.querySelector('.fg-group-remove')!.addEventListener('click', () => {
      this.groups = this.groups.filter((x) => x.id !== id);
      this.render();
      this.host.changed();
    });
    return el;
  }

  private noteElement(id: string): HTMLElement {
    const el = document.createElement('div');
    el.className = 'fg-note';
    el.dataset.noteId = id;
    el.innerHTML = '<div class="fg-note-bar"><span>Note</span><button type="button" class="fg-group-remove" title="Delete the note">✕</button></div><textarea class="fg-note-text" spellcheck="false" placeholder="Write a note…"></textarea>';
    this.draggable(el.querySelector<HTMLElement>('.fg-note-bar')!, async (dx, dy) => {
      this.notes = this.notes.map((n) => (n.id === id ? { ...n, position: { x: n.position.x + dx, y: n.position.y + dy } } : n));
      this.render();
    });
    const text = el.querySelector('textarea')!;
    for (const type of ['pointerdown', 'dblclick', 'wheel', 'contextmenu'] as const) text.addEventListener(type, (e) => e.stopPropagation());
    text.addEventListener('keydown', (e) => e.stopPropagation());
    text.addEventListener('input', () => {
      this.notes = this.notes.map((n) => (n.id === id ? { ...n, text: text.value } : n));
      this.host.changed();
    });
    el.querySelector('.fg-group-remove')!.addEventListener('click', () => {
      this.notes = this.notes.filter((n) => n.id !== id);
      this.render();
      this.host.changed();
    });
    return el;
  }

  /** Drags by a handle: the pointer's movement, in area units, goes to `move` as it happens. */
  private draggable(handle: HTMLElement, move: (dx: number, dy: number) => Promise<void>): void {
    handle.addEventListener('pointerdown', (e) => {
      if (e.button !== 0 || (e.target as HTMLElement).closest('button, input')) return;
      e.stopPropagation();
      e.preventDefault();
      let last: Position = { x: e.clientX, y: e.clientY };
      let chain = Promise.resolve();
      const onMove = (m: PointerEvent) => {
        const k = this.host.zoom();
        const dx = (m.clientX - last.x) / k;
        const dy = (m.clientY - last.y) / k;
        last = { x: m.clientX, y: m.clientY };
        chain = chain.then(() => move(dx, dy));
      };
      const onUp = () => {
        window.removeEventListener('pointermove', onMove);
        window.removeEventListener('pointerup', onUp);
        void chain.then(() => this.host.changed());
      };
      window.addEventListener('pointermove', onMove);
      window.addEventListener('pointerup', onUp);
    });
  }
}

function place(el: HTMLElement, b: Box): void {
  el.style.transform = `translate(${b.x}px, ${b.y}px)`;
  el.style.width = `${b.width}px`;
  el.style.height = `${b.height}px`;
}
