import { useEffect, useRef, useState } from 'react';
import type { TemplateInfo } from '../../nodes/protocol.js';

interface Props {
  readonly list: () => Promise<TemplateInfo[]>;
  readonly onPick: (name: string) => void;
}

/** The bundled graphs, listed fresh from the server each time the menu opens. */
export function TemplatesMenu({ list, onPick }: Props) {
  const [open, setOpen] = useState(false);
  const [items, setItems] = useState<TemplateInfo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const ref = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (!open) return;
    let live = true;
    list().then((t) => live && setItems(t), (e: Error) => live && setError(e.message));
    // Capture phase: the canvas stops pointer events from bubbling, which hid canvas clicks from a bubbling listener.
    const close = (e: PointerEvent) => {
      if (!ref.current?.contains(e.target as Node)) setOpen(false);
    };
    const escape = (e: KeyboardEvent) => {
      if (e.key === 'Escape') setOpen(false);
    };
    window.addEventListener('pointerdown', close, true);
    window.addEventListener('keydown', escape);
    return () => {
      live = false;
      window.removeEventListener('pointerdown', close, true);
      window.removeEventListener('keydown', escape);
    };
  }, [open, list]);

  return (
    <div className="fg-dropdown" ref={ref}>
      <button type="button" className="fg-button" aria-haspopup="menu" aria-expanded={open} onClick={() => setOpen((o) => !o)}>
        Templates ▾
      </button>
      {open && (
        <div className="fg-dropdown-menu" role="menu">
          {error && <div className="fg-muted">{error}</div>}
          {!error && !items && <div className="fg-muted">Loading…</div>}
          {items?.length === 0 && <div className="fg-muted">No bundled graphs</div>}
          {items?.map((t) => (
            <button
              key={t.name}
              type="button"
              role="menuitem"
              className="fg-dropdown-item"
              data-template={t.name}
              title={t.meta?.description}
              onClick={() => {
                setOpen(false);
                onPick(t.name);
              }}
            >
              <span>{t.meta?.name ?? t.name}</span>
              {t.meta?.description && <small>{t.meta.description}</small>}
            </button>
          ))}
        </div>
      )}
    </div>
  );
}
