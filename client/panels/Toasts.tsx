import { useSyncExternalStore } from 'react';
import type { ToastStore } from './toast-store.js';

export function Toasts({ store }: { store: ToastStore }) {
  const toasts = useSyncExternalStore(store.subscribe, store.snapshot);
  return (
    <div className="fg-toasts" aria-live="polite">
      {toasts.map((t) => (
        <div key={t.id} className={`fg-toast fg-toast-${t.kind}`} role={t.kind === 'error' ? 'alert' : 'status'} data-testid="toast">
          <span className="fg-toast-text">{t.message}</span>
          {t.action && (
            <button type="button" className="fg-toast-action" onClick={() => { t.action?.run(); store.dismiss(t.id); }}>
              {t.action.label}
            </button>
          )}
          <button type="button" className="fg-toast-close" aria-label="Dismiss" onClick={() => store.dismiss(t.id)}>×</button>
        </div>
      ))}
    </div>
  );
}
