import type { NodeMode } from '../../nodes/graph-format.js';
import type { MenuItems } from './create-plugins.js';
import type { Position } from './graph-convert.js';
import type { DropCandidate } from './link-drop.js';
import type { NodeRegistry } from './node-registry.js';

/** The menu for a link dropped on empty canvas: only the node types that can take it. */
export interface LinkDropMenu {
  readonly candidates: readonly DropCandidate[];
  readonly choose: (candidate: DropCandidate) => void;
}

export interface MenuActions {
  readonly registry: NodeRegistry;
  /** Area coordinates of the pointer when the menu opened; new nodes go there. */
  readonly pointer: () => Position;
  readonly addNode: (type: string, at: Position) => void;
  readonly duplicate: (ids: readonly string[]) => void;
  readonly remove: (ids: readonly string[]) => void;
  readonly removeLink: (id: string) => void;
  readonly selectedIds: () => string[];
  /** A link drop waiting for its menu, handed over once: the next background menu is that one. */
  readonly takeLinkDrop: () => LinkDropMenu | null;
  readonly addNote: (at: Position) => void;
  readonly toggleMode: (ids: readonly string[], mode: NodeMode) => void;
  readonly colour: (ids: readonly string[], color: string | undefined) => void;
  readonly group: (ids: readonly string[]) => void;
}

/** Node colours offered in the menu, as ComfyUI's: a few muted tones that keep white text legible. */
export const NODE_COLOURS: readonly { readonly label: string; readonly color: string | undefined }[] = [
  { label: 'Default', color: undefined },
  { label: 'Red', color: '#7a2e2e' },
  { label: 'Brown', color: '#6b4a2b' },
  { label: 'Green', color: '#2e5e34' },
  { label: 'Blue', color: '#2c4a78' },
  { label: 'Purple', color: '#5a3a78' },
  { label: 'Cyan', color: '#2a5f66' },
];

/**
 * The canvas context menu: on the background, every node type by category (searchable); on a node, duplicate and
 * delete (for the whole selection when the node is part of it); on a link, delete. A link dropped on empty canvas
 * opens the background menu too, as a flat searchable list of the node types that fit it.
 */
export function contextMenuItems(actions: MenuActions): MenuItems {
  return (context) => {
    if (context === 'root') {
      const drop = actions.takeLinkDrop();
      if (drop) {
        return {
          searchBar: true,
          list: drop.candidates.map((c) => ({ label: c.def.title, key: c.def.type, handler: () => drop.choose(c) })),
        };
      }
      const at = actions.pointer();
      return {
        searchBar: true,
        list: [
          ...actions.registry.groups().map((g) => ({
            label: g.category,
            key: `cat-${g.category}`,
            handler: () => undefined,
            subitems: g.defs.map((d) => ({ label: d.title, key: d.type, handler: () => actions.addNode(d.type, at) })),
          })),
          { label: 'Add note', key: 'add-note', handler: () => actions.addNote(at) },
        ],
      };
    }
    // The area plugin also reports right-clicks on links, which its types do not admit.
    if ('source' in context && 'target' in context) {
      const id = (context as { id: string }).id;
      return { searchBar: false, list: [{ label: 'Delete link', key: 'delete-link', handler: () => actions.removeLink(id) }] };
    }
    const node = context;
    const targets = () => (node.selected ? actions.selectedIds() : [node.id]);
    return {
      searchBar: false,
      list: [
        { label: node.mode === 'bypass' ? 'Run (un-bypass)' : 'Bypass (Ctrl+B)', key: 'bypass', handler: () => actions.toggleMode(targets(), 'bypass') },
        { label: node.mode === 'mute' ? 'Run (unmute)' : 'Mute (Ctrl+M)', key: 'mute', handler: () => actions.toggleMode(targets(), 'mute') },
        {
          label: 'Colour', key: 'colour', handler: () => undefined,
          subitems: NODE_COLOURS.map((c) => ({ label: c.label, key: `colour-${c.label.toLowerCase()}`, handler: () => actions.colour(targets(), c.color) })),
        },
        { label: 'Group (Ctrl+G)', key: 'group', handler: () => actions.group(targets()) },
        { label: 'Duplicate', key: 'duplicate', handler: () => actions.duplicate(targets()) },
        { label: 'Delete', key: 'delete', handler: () => actions.remove(targets()) },
      ],
    };
  };
}
