import type { NodeDef } from '../../nodes/define.js';
import { parseNodesResponse } from '../editor/node-registry.js';
import { authHeaders } from './auth.js';
import type { GraphIssue } from '../../nodes/graph-format.js';
import type { PromptTokens, QueueState, RunDetail, RunSummary, SubmitAccepted, TemplateInfo } from '../../nodes/protocol.js';
import type { ModelEntryKind } from '../../nodes/define.js';
import { EmbeddingListSchema, ErrorBodySchema, ModelListingSchema, PromptTokensSchema, QueueStateSchema } from '../../nodes/protocol.js';

/** An HTTP answer other than 2xx; `body` is the parsed JSON when there was one. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly body: unknown, message: string) {
    super(message);
    this.name = 'ApiError';
  }
}

async function request(path: string, init?: RequestInit): Promise<unknown> {
  const res = await fetch(path, { ...init, headers: { ...authHeaders(), ...(init?.headers as Record<string, string> | undefined) } });
  const text = await res.text();
  let body: unknown = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  if (!res.ok) {
    // People read the message; the code is for programs.
    const parsed = ErrorBodySchema.safeParse(body);
    throw new ApiError(res.status, body, parsed.success ? parsed.data.message : `${init?.method ?? 'GET'} ${path}: ${res.status} ${res.statusText}`);
  }
  return body;
}

const json = (body: unknown): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

export async function fetchNodeDefs(): Promise<NodeDef[]> {
  return parseNodesResponse(await request('/api/nodes'));
}

export async function fetchTemplates(): Promise<TemplateInfo[]> {
  const body = await request('/api/graphs');
  const list = Array.isArray(body) ? body : (body as { graphs?: unknown })?.graphs;
  return Array.isArray(list) ? (list as TemplateInfo[]).filter((t) => typeof t?.name === 'string') : [];
}

export function fetchTemplate(name: string): Promise<unknown> {
  return request(`/api/graphs/${encodeURIComponent(name)}`);
}

export type SubmitResult =
  | { readonly ok: true; readonly run: SubmitAccepted }
  | { readonly ok: false; readonly issues: readonly GraphIssue[] };

/** A 400 with issues is an expected answer (the graph is wrong), not a failure of the call. */
export async function submitRun(graph: unknown, clientId: string, front = false): Promise<SubmitResult> {
  try {
    const run = (await request('/api/runs', json({ graph, client_id: clientId, ...(front ? { front: true } : {}) }))) as SubmitAccepted;
    return { ok: true, run };
  } catch (e) {
    if (e instanceof ApiError && e.status === 400) {
      const issues = (e.body as { issues?: unknown } | null)?.issues;
      if (Array.isArray(issues)) return { ok: false, issues: issues as GraphIssue[] };
    }
    throw e;
  }
}

/** Newest first. */
export async function fetchRuns(): Promise<RunSummary[]> {
  const body = await request('/api/runs');
  const list = Array.isArray(body) ? body : (body as { runs?: unknown })?.runs;
  if (!Array.isArray(list)) return [];
  return (list as RunSummary[]).slice().sort((a, b) => b.created_at - a.created_at);
}

export function fetchRun(id: string): Promise<RunDetail> {
  return request(`/api/runs/${encodeURIComponent(id)}`) as Promise<RunDetail>;
}

export async function cancelRun(id: string): Promise<void> {
  await request(`/api/runs/${encodeURIComponent(id)}`, { method: 'DELETE' });
}

export async function moveRunToFront(id: string): Promise<void> {
  await request(`/api/runs/${encodeURIComponent(id)}/front`, { method: 'POST' });
}

export async function fetchQueue(): Promise<QueueState> {
  return QueueStateSchema.parse(await request('/api/queue'));
}

/** Pauses or resumes the server's queue (the flag survives restarts) and returns the queue as it now is. */
export async function setQueuePaused(paused: boolean): Promise<QueueState> {
  return QueueStateSchema.parse(await request(`/api/queue/${paused ? 'pause' : 'resume'}`, { method: 'POST' }));
}

export async function clearQueue(): Promise<void> {
  await request('/api/queue/clear', { method: 'POST' });
}

/** What the server's models root holds, by path relative to it and kind; unreadable entries are left out. */
export async function fetchModelEntries(): Promise<ModelEntry[]> {
  const body = (await request('/api/models')) as { models?: unknown };
  const list = Array.isArray(body?.models) ? body.models : [];
  return list.flatMap((m) => {
    const parsed = ModelListingSchema.safeParse(m);
    return parsed.success && !parsed.data.error ? [{ path: parsed.data.path, kind: parsed.data.kind ?? 'folder' }] : [];
  });
}

export interface ModelEntry {
  readonly path: string;
  readonly kind: ModelEntryKind;
}

/**
 * Returns null when the PNG carries no FuseGraph graph (422). The server answers `{graph, issues}`; a bare graph is
 * accepted too.
 */
export async function graphFromPng(png: Blob): Promise<unknown> {
  try {
    const body = await request('/api/graph-from-png', { method: 'POST', headers: { 'content-type': 'image/png' }, body: png });
    const wrapped = typeof body === 'object' && body !== null && 'graph' in body && !('format' in body);
    return wrapped ? (body as { graph: unknown }).graph : body;
  } catch (e) {
    if (e instanceof ApiError && e.status === 422) return null;
    throw e;
  }
}

/** Content tokens per 75-token chunk of a prompt, as EncodePrompt packs them, and the embeddings it names that are missing. */
export async function fetchPromptTokens(text: string, signal?: AbortSignal): Promise<PromptTokens> {
  return PromptTokensSchema.parse(await request('/api/prompt/tokens', { ...json({ text }), ...(signal ? { signal } : {}) }));
}

/** The names `embedding:NAME` takes: the files under the server's models/embeddings, without extension. */
export async function fetchEmbeddings(): Promise<string[]> {
  return EmbeddingListSchema.parse(await request('/api/embeddings')).embeddings;
}
