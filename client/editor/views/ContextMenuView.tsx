import { useEffect, useLayoutEffect, useRef, useState } from 'react';
import type { ContextMenuExtra } from 'rete-context-menu-plugin';

type Item = Extract<ContextMenuExtra, { type: 'render' }>['data']['items'][number];

interface Props {
  readonly items: readonly Item[];
  readonly searchBar?: boolean;
  readonly onHide: () => void;
}

function leaves(items: readonly Item[]): Item[] {
  return items.flatMap((i) => (i.subitems ? leaves(i.subitems) : [i]));
}

/**
 * The canvas context menu. Written here rather than taken from the react plugin's preset, whose search builds a
 * RegExp from what is typed (a "(" throws) and whose items pass non-DOM props to divs.
 */
export function ContextMenuView({ items, searchBar, onHide }: Props) {
  const [query, setQuery] = useState('');
  const [open, setOpen] = useState<string | null>(null);
  const ref = useRef<HTMLDivElement>(null);
  const [shift, setShift] = useState({ x: 0, y: 0 });

  // Opened near the right or bottom edge, the menu moves back inside the canvas (the side panels would cover it).
  useLayoutEffect(() => {
    const el = ref.current;
    const r = el?.getBoundingClientRect();
    if (!el || !r) return;
    const c = el.closest('.fg-canvas-wrap')?.getBoundingClientRect() ?? { right: window.innerWidth, bottom: window.innerHeight };
    setShift({ x: Math.min(0, c.right - r.right - 8), y: Math.min(0, c.bottom - r.bottom - 8) });
  }, []);

  // The plugin closes the menu only on a press inside the canvas, and Escape works only while the search field has
  // focus; a press anywhere else on the page and Escape from anywhere close it too.
  useEffect(() => {
    const outside = (e: PointerEvent) => {
      if (ref.current && !e.composedPath().includes(ref.current)) onHide();
    };
    const escape = (e: KeyboardEvent) => {
      if (e.key === 'Escape') onHide();
    };
    document.addEventListener('pointerdown', outside, true);
    document.addEventListener('keydown', escape);
    return () => {
      document.removeEventListener('pointerdown', outside, true);
      document.removeEventListener('keydown', escape);
    };
  }, [onHide]);

  const q = query.trim().toLowerCase();
  const shown = q ? leaves(items).filter((i) => i.label.toLowerCase().includes(q)) : items;
  const run = (item: Item) => {
    onHide();
    void item.handler();
  };

  return (
    <div
      ref={ref}
      className="fg-menu"
      data-testid="context-menu"
      style={{ transform: `translate(${shift.x}px, ${shift.y}px)` }}
      onPointerDown={(e) => e.stopPropagation()}
      onWheel={(e) => e.stopPropagation()}
      onContextMenu={(e) => e.preventDefault()}
    >
      {searchBar && (
        <input
          className="fg-input fg-menu-search"
          placeholder="Search nodes…"
          autoFocus
          value={query}
          onChange={(e) => setQuery(e.target.value)}
          onKeyDown={(e) => {
            const first = shown[0];
            if (e.key === 'Enter' && first && !first.subitems) run(first);
          }}
        />
      )}
      {shown.length === 0 && <div className="fg-menu-empty">No match</div>}
      {shown.map((item) => (
        <div key={item.key} className="fg-menu-entry" onPointerEnter={() => setOpen(item.subitems ? item.key : null)}>
          <button
            type="button"
            className={`fg-menu-item${item.subitems ? ' fg-menu-parent' : ''}`}
            data-key={item.key}
            onClick={() => (item.subitems ? setOpen(item.key) : run(item))}
          >
            {item.label}
          </button>
          {item.subitems && open === item.key && (
            <div className="fg-menu fg-submenu">
              {item.subitems.map((sub) => (
                <button key={sub.key} type="button" className="fg-menu-item" data-key={sub.key} onClick={() => run(sub)}>{sub.label}</button>
              ))}
            </div>
          )}
        </div>
      ))}
    </div>
  );
}
