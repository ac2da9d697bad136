import type { CSSProperties, KeyboardEvent, SyntheticEvent } from 'react';
import { useEffect, useLayoutEffect, useRef, useState } from 'react';
import type { PromptTokens } from '../../nodes/protocol.js';
import { fetchEmbeddings, fetchPromptTokens } from '../api/http.js';
import { wheelIfScrollable } from './stop-canvas-events.js';

interface Props {
  readonly id: string;
  readonly value: string;
  readonly maxLength?: number;
  readonly invalid: boolean;
  readonly onChange: (value: string) => void;
}

/** Tokens a chunk holds between its BOS and EOS (CLIP's 77). */
const CHUNK_TOKENS = 75;
/** Typing pauses this long before the count is asked for; a newer edit aborts the older request. */
const COUNT_DELAY_MS = 250;
const MAX_SUGGESTIONS = 12;
/** The embedding list is asked for again after this long (files can be added while the editor is open). */
const EMBEDDINGS_FRESH_MS = 10_000;
const PREFIX = 'embedding:';

let embeddingCache: { readonly at: number; readonly names: Promise<readonly string[]> } | null = null;

/** The server's embedding names, shared by every prompt widget; an unreachable server gives none (and is asked again). */
function embeddingList(): Promise<readonly string[]> {
  if (!embeddingCache || Date.now() - embeddingCache.at > EMBEDDINGS_FRESH_MS) {
    const names = fetchEmbeddings().catch(() => {
      embeddingCache = null;
      return [] as string[];
    });
    embeddingCache = { at: Date.now(), names };
  }
  return embeddingCache.names;
}

/** The `embedding:NAME` being typed at the caret: where NAME starts and ends, and what of it is typed before the caret. */
export interface EmbeddingFragment {
  readonly start: number;
  readonly end: number;
  readonly typed: string;
}

const NAME_CHARS = String.raw`[^\s():,]*`;
// A word starts after a space or, inside a weight group, after its "(" (ComfyUI reads `(embedding:x:1.2)`).
const BEFORE_CARET = new RegExp(String.raw`(?:^|[\s(])${PREFIX}(${NAME_CHARS})$`);
const AFTER_CARET = new RegExp(`^${NAME_CHARS}`);

export function embeddingFragment(text: string, caret: number): EmbeddingFragment | null {
  const m = BEFORE_CARET.exec(text.slice(0, caret));
  if (!m) return null;
  const typed = m[1] ?? '';
  return { start: caret - typed.length, end: caret + (AFTER_CARET.exec(text.slice(caret))?.[0].length ?? 0), typed };
}

/** Names containing what was typed (case-insensitive): those starting with it first, then those with a part starting with it. */
export function matchEmbeddings(names: readonly string[], typed: string): string[] {
  const t = typed.toLowerCase();
  const rank = (n: string): number => {
    const l = n.toLowerCase();
    if (l.startsWith(t)) return 0;
    if (l.split(/[/_\-\s.]/).some((part) => part.startsWith(t))) return 1;
    return l.includes(t) ? 2 : -1;
  };
  return names
    .map((n) => ({ n, r: rank(n) }))
    .filter((x) => x.r >= 0)
    .sort((a, b) => a.r - b.r)
    .slice(0, MAX_SUGGESTIONS)
    .map((x) => x.n);
}

/** "12/75", or "75/75 · 45/75" for a prompt of two chunks. */
export function formatTokenCount(chunks: readonly number[]): string {
  return chunks.map((c) => `${c}/${CHUNK_TOKENS}`).join(' · ');
}

/** The count of `text`, asked for once typing pauses; only the answer to the latest text is kept; null while unknown. */
function useTokenCount(text: string): PromptTokens | null {
  const [count, setCount] = useState<PromptTokens | null>(null);
  useEffect(() => {
    const ctrl = new AbortController();
    const timer = setTimeout(() => {
      fetchPromptTokens(text, ctrl.signal).then(
        (r) => ctrl.signal.aborted || setCount(r),
        // Unreachable server, older server without the route: no count, and no message about it.
        () => ctrl.signal.aborted || setCount(null),
      );
    }, COUNT_DELAY_MS);
    return () => {
      clearTimeout(timer);
      ctrl.abort();
    };
  }, [text]);
  return count;
}

const stop = (e: SyntheticEvent) => e.stopPropagation();

const listStyle: CSSProperties = {
  position: 'absolute', left: 0, right: 0, top: 'calc(100% + 2px)', margin: 0, maxHeight: 220, overflowY: 'auto', listStyle: 'none',
};
const countStyle: CSSProperties = {
  minHeight: 14, marginTop: 2, color: 'var(--muted)', fontSize: 10.5, lineHeight: '14px', textAlign: 'right',
  fontVariantNumeric: 'tabular-nums', whiteSpace: 'nowrap', overflow: 'hidden', textOverflow: 'ellipsis',
};

/**
 * EncodePrompt's text: a text area with the prompt's token count per chunk under it (as A1111 shows "12/75") and
 * completion of `embedding:NAME` from the server's embeddings (ArrowUp/ArrowDown, Enter or Tab, Escape, or a click).
 * Every keystroke is committed, as in TextWidget.
 */
export function PromptWidget({ id, value, maxLength, invalid, onChange }: Props) {
  const [text, setText] = useState(value);
  useEffect(() => setText(value), [value]);
  const ref = useRef<HTMLTextAreaElement>(null);
  const count = useTokenCount(text);

  const [fragment, setFragment] = useState<EmbeddingFragment | null>(null);
  const [names, setNames] = useState<readonly string[] | null>(null);
  const [active, setActive] = useState(0);
  // The fragment the list was closed for (Escape, or a completion just inserted): it stays closed until that changes.
  const [closedFor, setClosedFor] = useState<string | null>(null);
  const pendingCaret = useRef<number | null>(null);

  const wanted = fragment !== null;
  useEffect(() => {
    if (!wanted) return;
    let live = true;
    void embeddingList().then((n) => live && setNames(n));
    return () => {
      live = false;
    };
  }, [wanted]);

  const key = fragment ? `${fragment.start}:${fragment.typed}` : null;
  const matches = fragment && names && key !== closedFor ? matchEmbeddings(names, fragment.typed) : [];
  // Typing a whole name leaves nothing to complete: Enter is a new line again.
  const open = matches.length > 0 && !(matches.length === 1 && matches[0] === fragment?.typed);
  const current = Math.min(active, Math.max(matches.length - 1, 0));

  useLayoutEffect(() => {
    const caret = pendingCaret.current;
    if (caret === null || !ref.current) return;
    pendingCaret.current = null;
    ref.current.setSelectionRange(caret, caret);
  }, [text]);

  // Nodes stack in document order, so a later node would cover the list: its node sits above the others while it is open.
  useLayoutEffect(() => {
    // rete's node holder: the positioned element the node view is rendered into.
    let holder = open ? ref.current?.closest<HTMLElement>('.fg-node')?.parentElement ?? null : null;
    while (holder && getComputedStyle(holder).position !== 'absolute') holder = holder.parentElement;
    if (!holder) return;
    const before = holder.style.zIndex;
    holder.style.zIndex = '1';
    return () => {
      holder.style.zIndex = before;
    };
  }, [open]);

  const track = (el: HTMLTextAreaElement) => {
    const f = el.selectionStart === el.selectionEnd ? embeddingFragment(el.value, el.selectionStart) : null;
    setFragment((old) => (old?.start === f?.start && old?.end === f?.end && old?.typed === f?.typed ? old : f));
    if (f?.typed !== fragment?.typed) setActive(0);
  };

  const commit = (next: string) => {
    setText(next);
    onChange(next);
  };

  const insert = (name: string) => {
    if (!fragment) return;
    const next = text.slice(0, fragment.start) + name + text.slice(fragment.end);
    if (maxLength !== undefined && next.length > maxLength) return;
    const caret = fragment.start + name.length;
    pendingCaret.current = caret;
    setFragment({ start: fragment.start, end: caret, typed: name });
    setClosedFor(`${fragment.start}:${name}`);
    commit(next);
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (!open) return;
    const plain = !e.ctrlKey && !e.metaKey && !e.altKey;
    const handled = () => {
      e.preventDefault();
      e.stopPropagation();
    };
    if (e.key === 'ArrowDown' && plain) {
      handled();
      setActive((current + 1) % matches.length);
    } else if (e.key === 'ArrowUp' && plain) {
      handled();
      setActive((current - 1 + matches.length) % matches.length);
    } else if ((e.key === 'Enter' || e.key === 'Tab') && plain && !e.shiftKey) {
      handled();
      insert(matches[current]!);
    } else if (e.key === 'Escape') {
      handled();
      setClosedFor(key);
    }
  };

  const listId = `${id}-embeddings`;
  return (
    <div className="fg-prompt" style={{ flex: 1, minWidth: 0 }}>
      <div style={{ position: 'relative' }}>
        <textarea
          ref={ref}
          id={id}
          className="fg-input fg-textarea"
          rows={3}
          value={text}
          maxLength={maxLength}
          spellCheck={false}
          aria-invalid={invalid || undefined}
          aria-autocomplete="list"
          aria-expanded={open}
          aria-controls={open ? listId : undefined}
          aria-activedescendant={open ? `${listId}-${current}` : undefined}
          onWheel={wheelIfScrollable}
          onChange={(e) => {
            commit(e.target.value);
            track(e.target);
          }}
          onSelect={(e) => track(e.currentTarget)}
          onKeyDown={onKeyDown}
          onBlur={() => setFragment(null)}
        />
        {open && (
          <ul id={listId} role="listbox" className="fg-menu" data-testid="embedding-suggestions" style={listStyle}
            onPointerDown={stop} onDoubleClick={stop} onContextMenu={stop} onKeyDown={stop}
            onWheel={(e) => e.currentTarget.scrollHeight > e.currentTarget.clientHeight && e.stopPropagation()}>
            {matches.map((name, i) => (
              <li key={name} id={`${listId}-${i}`} role="option" aria-selected={i === current} data-embedding={name}
                className="fg-menu-item" style={{ cursor: 'pointer', ...(i === current ? { background: '#354061' } : {}) }}
                // The text area keeps the focus (and its caret) while the list is clicked.
                onMouseDown={(e) => e.preventDefault()}
                onMouseEnter={() => setActive(i)}
                onClick={() => insert(name)}>
                <span style={{ color: 'var(--muted)' }}>{PREFIX}</span>{name}
              </li>
            ))}
          </ul>
        )}
      </div>
      <div className="fg-token-count" data-testid="token-count" style={countStyle}
        title={count?.missing.length ? `embedding not found: ${count.missing.join(', ')} (counted as 1 token each)` : 'tokens per 75-token chunk'}>
        {count ? formatTokenCount(count.chunks) : ''}
      </div>
    </div>
  );
}
