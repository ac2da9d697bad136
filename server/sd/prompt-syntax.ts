/**
 * ComfyUI's prompt syntax (comfy/sd1_clip.py: escape_important, parse_parentheses, token_weights,
 * SDTokenizer.tokenize_with_weights), rewritten from its rules:
 *
 * - `(text)` multiplies the weight of `text` by 1.1, nested: `((text))` is 1.1² = 1.21;
 * - `(text:1.3)` sets the weight to 1.3 (it replaces the enclosing weight, it does not multiply it); the number is what
 *   follows the last `:` of the group, read as Python's float() reads it (spaces around it, `1e-1`, `1_0`); a group
 *   whose text after the last `:` is not a number (`(style:baroque)`) keeps ×1.1 and its text, colon included;
 * - `\(` and `\)` are literal brackets; any other backslash is text;
 * - brackets that do not pair up are text, as ComfyUI's scan leaves them: a `(` never closed stays in its word (`(cat`
 *   → the tokens of "(cat", weight 1); a `)` with nothing open lowers the nesting below zero, so brackets after it are
 *   text until a `(` balances it (`a) (b)` is all text, weight 1);
 * - words are split on spaces (newlines count as spaces); a word starting `embedding:NAME` is the textual-inversion
 *   embedding NAME (its N vectors in place of the word); when no embedding is called NAME but one is called NAME with
 *   its commas stripped, that one is used and the commas are tokenized after it (`embedding:foo,` → foo, ",");
 * - each word is one token group: its vocabulary entry `word</w>` when there is one, else its BPE tokens; groups are
 *   packed into 77-token chunks (BOS + 75 + EOS, padded): a group that would overflow a chunk starts the next one,
 *   except a group of 8 tokens or more, which is split across chunks.
 *
 * Where FuseGraph differs on purpose: ComfyUI skips a missing embedding (and one of the wrong width) with a warning;
 * here the tokenizer reports it and EncodePrompt refuses the graph at validation, naming it. A weight that is not
 * finite (`(a:inf)`, `(a:nan)`) would make the conditioning inf/NaN: it is reported too.
 */

/** A stretch of prompt text with one weight (ComfyUI's token_weights output). */
export interface WeightedText {
  readonly text: string;
  readonly weight: number;
}

/** One position of a chunk: a vocabulary id, or vector `vector` of embedding `embedding`. */
export type PromptToken =
  | { readonly id: number; readonly weight: number }
  | { readonly embedding: string; readonly vector: number; readonly weight: number };

/** The tokenizer operations the syntax needs (ClipTokenizer has them). */
export interface WordTokenizer {
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly modelMaxLength: number;
  /** Content tokens of a text, no BOS/EOS, not truncated. */
  tokens(text: string): number[];
}

/** How many vectors embedding `name` has, or null when there is no such embedding. */
export type EmbeddingVectors = (name: string) => number | null;

export interface TokenizedPrompt {
  /** Chunks of modelMaxLength (77) tokens: BOS, up to 75 tokens, EOS, padding. At least one. */
  readonly chunks: readonly (readonly PromptToken[])[];
  /** Content tokens per chunk (what the editor shows as "12/75"). */
  readonly counts: readonly number[];
  /** Embeddings named in the text that do not exist (not in the chunks, as ComfyUI leaves them out). */
  readonly missing: readonly string[];
  /** Embeddings used, by name, with their vector counts. */
  readonly embeddings: ReadonlyMap<string, number>;
  /** Weights that are not finite numbers, as written. */
  readonly badWeights: readonly string[];
}

/** ComfyUI's group size from which a word may be split across chunks (SDTokenizer.max_word_length). */
const MAX_WORD_LENGTH = 8;
const EMBEDDING_PREFIX = 'embedding:';
const ESC_CLOSE = '\0\u0001';
const ESC_OPEN = '\0\u0002';

function escapeImportant(text: string): string {
  return text.replaceAll('\\)', ESC_CLOSE).replaceAll('\\(', ESC_OPEN);
}

function unescapeImportant(text: string): string {
  return text.replaceAll(ESC_CLOSE, ')').replaceAll(ESC_OPEN, '(');
}

/** ComfyUI's parse_parentheses: top-level groups `( … )` and the text between them (the nesting may go negative). */
export function parseParentheses(text: string): string[] {
  const result: string[] = [];
  let current = '';
  let nesting = 0;
  for (const ch of text) {
    if (ch === '(') {
      if (nesting === 0) {
        if (current) result.push(current);
        current = '(';
      } else {
        current += ch;
      }
      nesting++;
    } else if (ch === ')') {
      nesting--;
      if (nesting === 0) {
        result.push(current + ')');
        current = '';
      } else {
        current += ch;
      }
    } else {
      current += ch;
    }
  }
  if (current) result.push(current);
  return result;
}

// Python's str.strip() whitespace (and float()'s): the ASCII set plus Unicode White_Space.
// eslint-disable-next-line no-control-regex -- U+001C..U+001F are whitespace to Python
const PY_SPACE = /^[\s\u001c-\u001f\u0085]+|[\s\u001c-\u001f\u0085]+$/gu;
const DIGITS = String.raw`\d(?:_?\d)*`;
const PY_FLOAT = new RegExp(String.raw`^[+-]?(?:(?:${DIGITS}(?:\.(?:${DIGITS})?)?|\.${DIGITS})(?:[eE][+-]?${DIGITS})?|inf|infinity|nan)$`, 'i');

/** Python's float(s) for the forms a prompt may hold, or null where float() raises. */
export function pythonFloat(s: string): number | null {
  const t = s.replace(PY_SPACE, '');
  if (!PY_FLOAT.test(t)) return null;
  const lower = t.toLowerCase().replace(/^\+/, '');
  if (/^-?inf(inity)?$/.test(lower)) return lower.startsWith('-') ? -Infinity : Infinity;
  if (/^-?nan$/.test(lower)) return NaN;
  return Number(t.replaceAll('_', ''));
}

function tokenWeights(text: string, weight: number, bad: string[]): WeightedText[] {
  const out: WeightedText[] = [];
  for (const part of parseParentheses(text)) {
    if (part.length >= 2 && part.startsWith('(') && part.endsWith(')')) {
      let inner = part.slice(1, -1);
      let w = weight * 1.1;
      const colon = inner.lastIndexOf(':');
      if (colon > 0) {
        const value = pythonFloat(inner.slice(colon + 1));
        if (value !== null) {
          if (!Number.isFinite(value)) bad.push(inner.slice(colon + 1).trim());
          w = value;
          inner = inner.slice(0, colon);
        }
      }
      out.push(...tokenWeights(inner, w, bad));
    } else {
      out.push({ text: part, weight });
    }
  }
  return out;
}

/** The prompt as (text, weight) stretches, escapes resolved: ComfyUI's token_weights(escape_important(text), 1.0). */
export function weightedText(text: string): { segments: WeightedText[]; badWeights: string[] } {
  const badWeights: string[] = [];
  const segments = tokenWeights(escapeImportant(text), 1.0, badWeights).map((s) => ({ text: unescapeImportant(s.text), weight: s.weight }));
  return { segments, badWeights };
}

/** The `embedding:NAME` names a prompt mentions (before any lookup), for listings and completion. */
export function embeddingNames(text: string): string[] {
  const names = new Set<string>();
  for (const { text: t } of weightedText(text).segments) {
    for (const word of t.replaceAll('\n', ' ').split(' ')) if (word.startsWith(EMBEDDING_PREFIX)) names.add(word.slice(EMBEDDING_PREFIX.length));
  }
  return [...names];
}

/**
 * Tokenizes a prompt as ComfyUI's SDTokenizer.tokenize_with_weights does (see the module comment), packing the
 * tokens into chunks of `tokenizer.modelMaxLength`.
 */
export function tokenizePrompt(text: string, tokenizer: WordTokenizer, vectors: EmbeddingVectors): TokenizedPrompt {
  const { segments, badWeights } = weightedText(text);
  const missing: string[] = [];
  const embeddings = new Map<string, number>();
  const groups: PromptToken[][] = [];
  for (const { text: segment, weight } of segments) {
    for (let word of segment.replaceAll('\n', ' ').split(' ')) {
      if (word === '') continue;
      if (word.startsWith(EMBEDDING_PREFIX)) {
        const name = word.slice(EMBEDDING_PREFIX.length);
        let found: string | null = vectors(name) === null ? null : name;
        let leftover = '';
        if (found === null) {
          const stripped = name.replace(/^,+|,+$/g, '');
          if (stripped.length < name.length && vectors(stripped) !== null) {
            found = stripped;
            leftover = name.slice(stripped.length);
          }
        }
        if (found === null) {
          if (!missing.includes(name)) missing.push(name);
        } else {
          const n = vectors(found)!;
          embeddings.set(found, n);
          groups.push(Array.from({ length: n }, (_, vector) => ({ embedding: found, vector, weight })));
        }
        if (leftover === '') continue;
        word = leftover;
      }
      // The word through the tokenizer as ComfyUI calls it on each word: lower-cased, cleaned, BPE (a direct vocabulary
      // lookup of "A</w>" would find the byte token, not what CLIP's tokenizer gives for "a").
      groups.push(tokenizer.tokens(word).map((id) => ({ id, weight })));
    }
  }
  const { chunks, counts } = packChunks(groups, tokenizer);
  return { chunks, counts, missing, embeddings, badWeights };
}

/** Packs token groups into chunks as SDTokenizer does: BOS, tokens, EOS, padding to `modelMaxLength`. */
export function packChunks(groups: readonly (readonly PromptToken[])[], tokenizer: Pick<WordTokenizer, 'bosTokenId' | 'eosTokenId' | 'padTokenId' | 'modelMaxLength'>): { chunks: PromptToken[][]; counts: number[] } {
  const max = tokenizer.modelMaxLength;
  const special = (id: number): PromptToken => ({ id, weight: 1.0 });
  const chunks: PromptToken[][] = [];
  let chunk: PromptToken[] = [special(tokenizer.bosTokenId)];
  chunks.push(chunk);
  const counts: number[] = [];
  for (const g of groups) {
    let group = g;
    const large = group.length >= MAX_WORD_LENGTH;
    while (group.length > 0) {
      if (group.length + chunk.length > max - 1) {
        const remaining = max - chunk.length - 1;
        if (large) {
          chunk.push(...group.slice(0, remaining), special(tokenizer.eosTokenId));
          group = group.slice(remaining);
        } else {
          chunk.push(special(tokenizer.eosTokenId));
          for (let i = 0; i < remaining; i++) chunk.push(special(tokenizer.padTokenId));
        }
        counts.push(max - 2 - (large ? 0 : remaining));
        chunk = [special(tokenizer.bosTokenId)];
        chunks.push(chunk);
      } else {
        chunk.push(...group);
        group = [];
      }
    }
  }
  counts.push(chunk.length - 1);
  chunk.push(special(tokenizer.eosTokenId));
  while (chunk.length < max) chunk.push(special(tokenizer.padTokenId));
  return { chunks, counts };
}
