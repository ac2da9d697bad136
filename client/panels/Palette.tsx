import { useState } from 'react';
import { SOCKET_COLORS } from '../../nodes/socket-types.js';
import type { NodeRegistry } from '../editor/node-registry.js';

/** The drag payload type of a palette entry; the canvas drop handler tells it apart from files. */
export const NODE_DRAG_TYPE = 'application/x-fusegraph-node';

interface Props {
  readonly registry: NodeRegistry;
  readonly onAdd: (type: string) => void;
  readonly onCollapse: () => void;
}

/** Every node type the server offers, by category, searchable by name. Click adds near the view centre; drag places it. */
export function Palette({ registry, onAdd, onCollapse }: Props) {
  const [query, setQuery] = useState('');
  const groups = registry.groups(query);
  return (
    <aside className="fg-palette" aria-label="Node palette">
      <div className="fg-palette-head">
        <input
        className="fg-input fg-palette-search"
        type="search"
        placeholder="Search nodes…"
        value={query}
        onChange={(e) => setQuery(e.target.value)}
        onKeyDown={(e) => {
          const first = groups[0]?.defs[0];
          if (e.key === 'Enter' && first) onAdd(first.type);
        }}
        />
        <button type="button" className="fg-icon-button" title="Hide the palette" data-testid="collapse-palette" onClick={onCollapse}>‹</button>
      </div>
      <div className="fg-palette-list">
        {groups.length === 0 && <div className="fg-muted">No node matches “{query}”</div>}
        {groups.map((g) => (
          <section key={g.category} className="fg-palette-group">
            <h3 className={`fg-palette-category fg-cat-${g.category}`}>{g.category}</h3>
            {g.defs.map((d) => (
              <button
                key={d.type}
                type="button"
                className="fg-palette-item"
                title={d.description}
                draggable
                data-node-type={d.type}
                onDragStart={(e) => {
                  e.dataTransfer.setData(NODE_DRAG_TYPE, d.type);
                  e.dataTransfer.effectAllowed = 'copy';
                }}
                onClick={() => onAdd(d.type)}
              >
                <span className="fg-palette-title">{d.title}</span>
                <span className="fg-palette-sockets" aria-hidden="true">
                  {Object.values(d.outputs).map((o, i) => <i key={i} style={{ background: SOCKET_COLORS[o.type] }} />)}
                </span>
              </button>
            ))}
          </section>
        ))}
      </div>
    </aside>
  );
}
