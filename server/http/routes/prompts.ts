import { Router } from 'express';
import { z } from 'zod';
import { HttpError } from '../http-error.js';
import { BUNDLED_CLIP_TOKENIZER } from '../../sd/checkpoint-folder.js';
import { findEmbeddingFile, inspectEmbedding, listEmbeddings } from '../../sd/embeddings.js';
import { embeddingCandidates } from '../../sd/prompt-encoding.js';
import { tokenizePrompt } from '../../sd/prompt-syntax.js';
import { ClipTokenizer } from '../../sd/tokenizer.js';
import type { PromptTokens } from '../../../nodes/protocol.js';

/** EncodePrompt's own limit on `text` (nodes/defs/conditioning/encode-prompt.ts). */
const MAX_TEXT = 10_000;

const TokensBody = z.strictObject({ text: z.string().max(MAX_TEXT) });

let tokenizer: Promise<ClipTokenizer> | undefined;
/** The bundled CLIP vocabulary, read once (a checkpoint's and an SD-1 folder's tokenizer are this one). */
function bundledTokenizer(): Promise<ClipTokenizer> {
  tokenizer ??= ClipTokenizer.fromFolder(BUNDLED_CLIP_TOKENIZER).catch((err: unknown) => {
    tokenizer = undefined;
    throw err;
  });
  return tokenizer;
}

/**
 * Tokens per 75-token chunk of `text` as EncodePrompt packs them (ComfyUI's syntax, prompt-syntax.ts), for the
 * editor's "12/75" line. An `embedding:NAME` counts as its vectors when its file is found (1 when the file cannot be
 * read), else as 1; the names not found come back in `missing`.
 */
export async function countPromptTokens(text: string, modelsRoot: string): Promise<PromptTokens> {
  const tok = await bundledTokenizer();
  const vectors = new Map<string, number>();
  for (const name of embeddingCandidates(text)) {
    if ((await findEmbeddingFile(modelsRoot, name)) === null) continue;
    try {
      vectors.set(name, (await inspectEmbedding(modelsRoot, name)).vectors);
    } catch {
      vectors.set(name, 1);
    }
  }
  const first = tokenizePrompt(text, tok, (name) => vectors.get(name) ?? null);
  if (first.missing.length === 0) return { chunks: [...first.counts], missing: [] };
  // A missing embedding still takes a place in the count, as the user will fix it rather than drop it.
  const missing = new Set(first.missing);
  const counted = tokenizePrompt(text, tok, (name) => vectors.get(name) ?? (missing.has(name) ? 1 : null));
  return { chunks: [...counted.counts], missing: first.missing.slice() };
}

function parseOr400<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new HttpError(400, 'bad_request', `invalid ${what}: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** The prompt widget's helpers: token counts per chunk and the embedding names `embedding:` completes. */
export function promptsRoutes(modelsRoot: string): Router {
  const router = Router();
  router.post('/prompt/tokens', async (req, res) => {
    if (req.body === undefined) {
      throw new HttpError(415, 'unsupported_media_type', 'send { "text": … } as JSON with "Content-Type: application/json"');
    }
    const { text } = parseOr400(TokensBody, req.body, 'request body');
    res.json(await countPromptTokens(text, modelsRoot));
  });
  router.get('/embeddings', async (_req, res) => {
    res.json({ embeddings: await listEmbeddings(modelsRoot) });
  });
  return router;
}
