import { useEffect } from 'react';
import { modelToGraph } from '../editor/graph-convert.js';
import type { AppActions } from './app-actions.js';

function isEditable(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable || target.tagName === 'TEXTAREA' || target.tagName === 'SELECT') return true;
  return target.tagName === 'INPUT' && !['checkbox', 'radio', 'button'].includes((target as HTMLInputElement).type);
}

/**
 * Editor shortcuts, bound on the document with cleanup (rete-history's own keyboard extension cannot be
 * unbound, and would double up under React's development double-mount). While a widget has focus its keys are its
 * own, except Ctrl+Enter (Ctrl+Shift+Enter: at the front of the queue), which runs from anywhere, as in ComfyUI.
 */
export function useShortcuts(actions: AppActions, openPaste: () => void): void {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const editor = actions.ready;
      if (!editor) return;
      const mod = e.ctrlKey || e.metaKey;
      if (mod && e.key === 'Enter') {
        e.preventDefault();
        void actions.run(e.shiftKey);
        return;
      }
      if (isEditable(e.target) || document.querySelector('.fg-overlay')) return;
      const key = e.key.toLowerCase();
      const handled = (fn: () => unknown) => {
        e.preventDefault();
        void fn();
      };
      if (!mod && !e.altKey && (e.key === 'Delete' || e.key === 'Backspace')) return handled(() => editor.deleteSelected());
      if (!mod && !e.altKey && key === 'f') return handled(() => editor.zoomToFit());
      if (!mod) return;
      if (key === 'z' && !e.shiftKey) return handled(() => editor.undo());
      if (key === 'y' || (key === 'z' && e.shiftKey)) return handled(() => editor.redo());
      if (key === 'd') return handled(() => editor.duplicateSelected());
      if (key === 'b') return handled(() => editor.toggleMode('bypass'));
      if (key === 'm') return handled(() => editor.toggleMode('mute'));
      if (key === 'g') return handled(() => editor.groupSelected());
      if (key === 'a') return handled(() => editor.selectAll());
      if (key === 's') return handled(() => actions.downloadGraph());
      if (key === 'o') return handled(openPaste);
    };
    // Copy and paste go through the clipboard events, which need no permission: Ctrl+C copies the selection (or the
    // whole graph) as graph JSON text; pasting graph JSON inserts it next to what is there.
    const onCopy = (e: ClipboardEvent) => {
      const editor = actions.ready;
      if (!editor || isEditable(e.target) || window.getSelection()?.toString()) return;
      e.clipboardData?.setData('text/plain', JSON.stringify(modelToGraph(editor.selectionModel()), null, 2));
      e.preventDefault();
    };
    const onPaste = (e: ClipboardEvent) => {
      const editor = actions.ready;
      const text = e.clipboardData?.getData('text/plain');
      if (!editor || !text || isEditable(e.target) || document.querySelector('.fg-overlay')) return;
      e.preventDefault();
      void actions.pasteText(text);
    };
    document.addEventListener('keydown', onKey);
    document.addEventListener('copy', onCopy);
    document.addEventListener('paste', onPaste);
    return () => {
      document.removeEventListener('keydown', onKey);
      document.removeEventListener('copy', onCopy);
      document.removeEventListener('paste', onPaste);
    };
  }, [actions, openPaste]);
}
