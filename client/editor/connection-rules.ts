import type { SocketType } from '../../nodes/socket-types.js';
import { socketsCompatible } from '../../nodes/socket-types.js';

/** The facts the rules need about a proposed link, gathered by the adapter from rete's nodes. */
export interface LinkProposal {
  readonly source: string;
  readonly sourceOutput: string;
  readonly sourceType: SocketType | undefined;
  readonly target: string;
  readonly targetInput: string;
  readonly targetType: SocketType | undefined;
}

export interface ExistingLink {
  readonly source: string;
  readonly target: string;
  readonly targetInput: string;
}

export type LinkVerdict = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export interface RuleOptions {
  /** Interactive drags replace the link already on an input; programmatic adds must not silently do that. */
  readonly replacesExisting: boolean;
}

/**
 * The edit-time twin of the server's validator: same-type sockets only, one link per input, no cycles. Refusals
 * carry a sentence for the toast.
 */
export function checkLink(p: LinkProposal, links: readonly ExistingLink[], opts: RuleOptions): LinkVerdict {
  if (!p.sourceType || !p.targetType) return { ok: false, reason: 'unknown socket' };
  if (!socketsCompatible(p.sourceType, p.targetType)) {
    return { ok: false, reason: `Cannot connect ${p.sourceType} to ${p.targetType}: “${p.targetInput}” takes ${p.targetType}` };
  }
  if (p.source === p.target) return { ok: false, reason: 'A node cannot feed itself' };
  if (!opts.replacesExisting && links.some((l) => l.target === p.target && l.targetInput === p.targetInput)) {
    return { ok: false, reason: `Input “${p.targetInput}” already has a link` };
  }
  const others = links.filter((l) => !(l.target === p.target && l.targetInput === p.targetInput));
  if (reaches(p.target, p.source, others)) return { ok: false, reason: 'That link would create a cycle' };
  return { ok: true };
}

/** True when `to` is downstream of `from` along existing links. */
export function reaches(from: string, to: string, links: readonly ExistingLink[]): boolean {
  const next = new Map<string, string[]>();
  for (const l of links) {
    const list = next.get(l.source) ?? [];
    list.push(l.target);
    next.set(l.source, list);
  }
  const seen = new Set<string>([from]);
  const stack = [from];
  while (stack.length) {
    const id = stack.pop() as string;
    if (id === to) return true;
    for (const n of next.get(id) ?? []) {
      if (!seen.has(n)) {
        seen.add(n);
        stack.push(n);
      }
    }
  }
  return false;
}
