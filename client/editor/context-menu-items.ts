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
}

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
        list: actions.registry.groups().map((g) => ({
          label: g.category,
          key: `cat-${g.category}`,
          handler: () => undefined,
          subitems: g.defs.map((d) => ({ label: d.title, key: d.type, handler: () => actions.addNode(d.type, at) })),
        })),
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
        { label: 'Duplicate', key: 'duplicate', handler: () => actions.duplicate(targets()) },
        { label: 'Delete', key: 'delete', handler: () => actions.remove(targets()) },
      ],
    };
  };
}
