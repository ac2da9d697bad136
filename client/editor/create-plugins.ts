import { createElement } from 'react';
import { createRoot } from 'react-dom/client';
import { NodeEditor } from 'rete';
import { AreaExtensions, AreaPlugin } from 'rete-area-plugin';
import { ConnectionPlugin } from 'rete-connection-plugin';
import { ContextMenuPlugin } from 'rete-context-menu-plugin';
import type { ContextMenuExtra } from 'rete-context-menu-plugin';
import { HistoryPlugin, Presets as HistoryPresets } from 'rete-history-plugin';
import type { HistoryActions } from 'rete-history-plugin';
import { MinimapPlugin } from 'rete-minimap-plugin';
import { Presets, ReactPlugin } from 'rete-react-plugin';
import type { RenderEmit } from 'rete-react-plugin';
import type { NodeUiAction } from './node-ui-action.js';
import type { ParamChangeAction } from './param-change-action.js';
import type { AreaExtra, FuseNode, Schemes } from './schemes.js';
import { ConnectionView } from './views/ConnectionView.js';
import { ContextMenuView } from './views/ContextMenuView.js';
import type { NodeViewServices } from './views/FuseNodeView.js';
import { FuseNodeView } from './views/FuseNodeView.js';
import { SocketView } from './views/SocketView.js';

export type MenuItems = ConstructorParameters<typeof ContextMenuPlugin<Schemes>>[0]['items'];
export type EditorAction = HistoryActions<Schemes> | ParamChangeAction | NodeUiAction;

export interface Plugins {
  readonly editor: NodeEditor<Schemes>;
  readonly area: AreaPlugin<Schemes, AreaExtra>;
  readonly connection: ConnectionPlugin<Schemes, AreaExtra>;
  readonly history: HistoryPlugin<Schemes, EditorAction>;
  readonly selector: ReturnType<typeof AreaExtensions.selector>;
  readonly selection: ReturnType<typeof AreaExtensions.selectableNodes>;
  readonly destroy: () => void;
}

/** Wires rete's plugins the way the official React examples do, with FuseGraph's own views plugged in. */
export function createPlugins(container: HTMLElement, views: NodeViewServices, menuItems: MenuItems): Plugins {
  const editor = new NodeEditor<Schemes>();
  const area = new AreaPlugin<Schemes, AreaExtra>(container);
  const connection = new ConnectionPlugin<Schemes, AreaExtra>();
  const render = new ReactPlugin<Schemes, AreaExtra>({ createRoot });
  const contextMenu = new ContextMenuPlugin<Schemes>({ items: menuItems });
  const minimap = new MinimapPlugin<Schemes>({ boundViewport: true });
  const history = new HistoryPlugin<Schemes, EditorAction>();

  // One component for the editor's lifetime: a new function per render would remount every node.
  const NodeComponent = (props: { data: FuseNode; emit: RenderEmit<Schemes> }) =>
    createElement(FuseNodeView, { ...props, services: views });

  render.addPreset(Presets.classic.setup({
    customize: {
      node: () => NodeComponent,
      socket: () => SocketView,
      connection: () => ConnectionView,
    },
  }));
  render.addPreset({
    render(context: Extract<AreaExtra, { type: 'render' }>) {
      if (context.data.type !== 'contextmenu') return null;
      const data = (context as Extract<ContextMenuExtra, { type: 'render' }>).data;
      // A new key per opening resets the search field and the open submenu.
      return createElement(ContextMenuView, { key: String(Date.now()), items: data.items, searchBar: data.searchBar, onHide: data.onHide });
    },
  });
  render.addPreset(Presets.minimap.setup({ size: 130 }));
  history.addPreset(HistoryPresets.classic.setup());

  editor.use(area);
  area.use(connection);
  area.use(render);
  area.use(contextMenu);
  area.use(minimap);
  area.use(history);

  const selector = AreaExtensions.selector();
  const accumulating = AreaExtensions.accumulateOnCtrl();
  const selection = AreaExtensions.selectableNodes(area, selector, { accumulating });
  AreaExtensions.simpleNodesOrder(area);

  return {
    editor, area, connection, history, selector, selection,
    destroy: () => {
      accumulating.destroy();
      area.destroy();
    },
  };
}
