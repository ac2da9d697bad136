// CLIP byte-level BPE tokenizer, behaving like transformers' fast / v5 CLIPTokenizer
// (the SD 1.x tokenizer files: vocab.json, merges.txt, special tokens; shipped in server/sd/clip-tokenizer, openai CLIP's vocabulary, MIT).

import { readFile } from 'node:fs/promises';
import path from 'node:path';

export class TokenizerError extends Error {
  constructor(
    message: string,
    readonly file?: string,
  ) {
    super(message);
    this.name = 'TokenizerError';
  }
}

// The original CLIP merge list is far longer than the vocabulary; only the first
// 49152 - 256 - 2 merges have ids in the 49408-entry vocab (the slice transformers takes).
const MAX_MERGES = 49152 - 256 - 2;

// Without a model_max_length the CLIP text encoder still only has 77 positions.
const DEFAULT_MAX_LENGTH = 77;
// transformers writes ~1e30 as "unset"; anything this large cannot be a real context size.
const MAX_SANE_MAX_LENGTH = 1 << 20;

// Bounded so a long-running server fed arbitrary prompts cannot grow the cache forever.
const CACHE_LIMIT = 50_000;

const DEFAULT_BOS = '<|startoftext|>';
const DEFAULT_EOS = '<|endoftext|>';

// \p{White_Space} rather than \s: JS \s adds U+FEFF and lacks U+0085, unlike the
// Unicode White_Space set the tokenizers library uses in both places.
const WHITESPACE_RUN = /\p{White_Space}+/gu;
// Case-sensitive like the tokenizers Split regex: the text is already lowercased, and
// JS case folding would otherwise let "'ſ" (long s) match the "'s" contraction.
const PRETOKEN_SOURCE =
  "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^\\p{White_Space}\\p{L}\\p{N}]+";

const VOCAB_FILE = 'vocab.json';
const MERGES_FILE = 'merges.txt';
const SPECIAL_MAP_FILE = 'special_tokens_map.json';
const CONFIG_FILE = 'tokenizer_config.json';

/** GPT-2/CLIP byte → printable-character table, indexed by byte value. */
export function byteSymbols(): string[] {
  const table = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return table;
}

function escapeRegExp(s: string): string {
  // Only syntax characters: identity escapes of anything else are errors under the u flag.
  return s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
}

/**
 * Matches any of `tokens`, preferring the longest at the leftmost position,
 * which is how the added-vocabulary split in tokenizers resolves overlaps.
 */
function alternation(tokens: readonly string[]): RegExp | null {
  if (tokens.length === 0) return null;
  const sorted = [...tokens].sort((a, b) => b.length - a.length);
  return new RegExp(sorted.map(escapeRegExp).join('|'), 'gu');
}

/**
 * Lowercases code point by code point. String.prototype.toLowerCase applies the
 * context-dependent final-sigma rule, which the tokenizers normalizer does not.
 */
function lowercase(s: string): string {
  return s.replace(/Σ/g, 'σ').toLowerCase();
}

function normalize(s: string): string {
  return lowercase(s.normalize('NFC').replace(WHITESPACE_RUN, ' '));
}

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function errorCode(err: unknown): string | undefined {
  return isObject(err) && typeof err.code === 'string' ? err.code : undefined;
}

async function readText(file: string, optional: boolean): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if (errorCode(err) === 'ENOENT') {
      if (optional) return undefined;
      throw new TokenizerError(`tokenizer file missing: ${file}`, file);
    }
    const why = err instanceof Error ? err.message : String(err);
    throw new TokenizerError(`tokenizer file unreadable: ${file}: ${why}`, file);
  }
}

function parseJsonObject(text: string, file: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new TokenizerError(`tokenizer file malformed: ${file}: ${why}`, file);
  }
  if (!isObject(value)) {
    throw new TokenizerError(`tokenizer file malformed: ${file}: expected a JSON object`, file);
  }
  return value;
}

interface TokenSpec {
  content: string;
  /** Whether the token is matched after normalization (true) or in the raw text (false). */
  normalized: boolean;
}

/**
 * Special-token entries are either a plain string or a serialized AddedToken.
 * Specials default to raw-text matching, as tokenizers does for special AddedTokens.
 */
function parseTokenSpec(value: unknown, file: string, key: string): TokenSpec | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return { content: value, normalized: false };
  if (isObject(value) && typeof value.content === 'string') {
    if (value.normalized !== undefined && typeof value.normalized !== 'boolean') {
      throw new TokenizerError(`tokenizer file malformed: ${file}: "${key}.normalized" is not a boolean`, file);
    }
    return { content: value.content, normalized: value.normalized === true };
  }
  throw new TokenizerError(`tokenizer file malformed: ${file}: "${key}" is not a token string or {content}`, file);
}

interface Source {
  file: string;
  json: JsonObject;
}

interface ResolvedSpecial extends TokenSpec {
  file: string | undefined;
}

/** special_tokens_map.json overrides tokenizer_config.json, as in transformers' loader. */
function resolveSpecial(sources: readonly Source[], key: string, fallback: string): ResolvedSpecial {
  for (const { file, json } of sources) {
    const spec = parseTokenSpec(json[key], file, key);
    if (spec) return { ...spec, file };
  }
  return { content: fallback, normalized: false, file: undefined };
}

interface Merges {
  /** (leftId * idSpan + rightId) → rank. */
  rank: Map<number, number>;
  /** Indexed by rank. */
  left: Int32Array;
  right: Int32Array;
  merged: Int32Array;
}

function parseMerges(text: string, file: string, vocab: Map<string, number>, idSpan: number): Merges {
  const lines = text.split('\n');
  let start = 0;
  if (lines[0]?.startsWith('#version')) start = 1;
  const count = Math.min(MAX_MERGES, lines.length - start);
  const left = new Int32Array(count);
  const right = new Int32Array(count);
  const merged = new Int32Array(count);
  const rank = new Map<number, number>();
  let n = 0;
  for (let i = start; i < lines.length && n < count; i++) {
    const line = (lines[i] ?? '').replace(/\r$/, '');
    if (line === '') {
      if (lines.slice(i + 1).every((l) => l.trim() === '')) break;
      throw new TokenizerError(`tokenizer file malformed: ${file}: line ${i + 1} is empty`, file);
    }
    const parts = line.split(' ');
    const a = parts[0] ?? '';
    const b = parts[1] ?? '';
    if (parts.length !== 2 || a === '' || b === '') {
      throw new TokenizerError(`tokenizer file malformed: ${file}: line ${i + 1} is not "<left> <right>"`, file);
    }
    const aId = vocab.get(a);
    const bId = vocab.get(b);
    const mId = vocab.get(a + b);
    if (aId === undefined || bId === undefined || mId === undefined) {
      throw new TokenizerError(
        `tokenizer file malformed: ${file}: line ${i + 1} ("${line}") uses a token missing from ${VOCAB_FILE}`,
        file,
      );
    }
    left[n] = aId;
    right[n] = bId;
    merged[n] = mId;
    // Later duplicates win, as when transformers builds its rank dictionary.
    rank.set(aId * idSpan + bId, n);
    n++;
  }
  return { rank, left: left.subarray(0, n), right: right.subarray(0, n), merged: merged.subarray(0, n) };
}

interface ClipTokenizerParts {
  modelMaxLength: number;
  bosTokenId: number;
  eosTokenId: number;
  padTokenId: number;
  unkTokenId: number;
  vocabSize: number;
  idSpan: number;
  byteIds: Int32Array;
  byteEndIds: Int32Array;
  merges: Merges;
  addedIds: Map<string, number>;
  rawAdded: RegExp | null;
  normalizedAdded: RegExp | null;
}

export class ClipTokenizer {
  readonly modelMaxLength: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly vocabSize: number;

  private readonly unkTokenId: number;
  private readonly idSpan: number;
  private readonly byteIds: Int32Array;
  private readonly byteEndIds: Int32Array;
  private readonly merges: Merges;
  private readonly addedIds: Map<string, number>;
  private readonly rawAdded: RegExp | null;
  private readonly normalizedAdded: RegExp | null;
  private readonly pretoken = new RegExp(PRETOKEN_SOURCE, 'gu');
  private readonly utf8 = new TextEncoder();
  private readonly cache = new Map<string, readonly number[]>();

  private constructor(parts: ClipTokenizerParts) {
    this.modelMaxLength = parts.modelMaxLength;
    this.bosTokenId = parts.bosTokenId;
    this.eosTokenId = parts.eosTokenId;
    this.padTokenId = parts.padTokenId;
    this.unkTokenId = parts.unkTokenId;
    this.vocabSize = parts.vocabSize;
    this.idSpan = parts.idSpan;
    this.byteIds = parts.byteIds;
    this.byteEndIds = parts.byteEndIds;
    this.merges = parts.merges;
    this.addedIds = parts.addedIds;
    this.rawAdded = parts.rawAdded;
    this.normalizedAdded = parts.normalizedAdded;
  }

  static async fromFolder(dir: string): Promise<ClipTokenizer> {
    const vocabPath = path.join(dir, VOCAB_FILE);
    const mergesPath = path.join(dir, MERGES_FILE);
    const specialPath = path.join(dir, SPECIAL_MAP_FILE);
    const configPath = path.join(dir, CONFIG_FILE);
    const [vocabText, mergesText, specialText, configText] = await Promise.all([
      readText(vocabPath, false),
      readText(mergesPath, false),
      readText(specialPath, true),
      readText(configPath, true),
    ]);

    const vocab = new Map<string, number>();
    let maxId = -1;
    for (const [token, id] of Object.entries(parseJsonObject(vocabText ?? '', vocabPath))) {
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
        throw new TokenizerError(`tokenizer file malformed: ${vocabPath}: id of "${token}" is not a non-negative integer`, vocabPath);
      }
      vocab.set(token, id);
      if (id > maxId) maxId = id;
    }

    const special: Source | undefined = specialText === undefined ? undefined : { file: specialPath, json: parseJsonObject(specialText, specialPath) };
    const config: Source | undefined = configText === undefined ? undefined : { file: configPath, json: parseJsonObject(configText, configPath) };
    const sources = [special, config].filter((s): s is Source => s !== undefined);

    // Tokens registered in the added vocabulary are cut out of the text before BPE;
    // the first registration of a content string wins, as in tokenizers.
    const added = new Map<string, { id: number; normalized: boolean }>();
    const register = (spec: TokenSpec, id: number): void => {
      if (spec.content !== '' && !added.has(spec.content)) added.set(spec.content, { id, normalized: spec.normalized });
    };

    const decoder = config?.json.added_tokens_decoder;
    if (decoder !== undefined && !isObject(decoder)) {
      throw new TokenizerError(`tokenizer file malformed: ${configPath}: "added_tokens_decoder" is not an object`, configPath);
    }
    const decoderEntries = Object.entries(decoder ?? {})
      .map(([key, value]) => {
        const id = Number(key);
        if (!Number.isSafeInteger(id) || id < 0 || !isObject(value) || typeof value.content !== 'string') {
          throw new TokenizerError(`tokenizer file malformed: ${configPath}: bad added_tokens_decoder entry "${key}"`, configPath);
        }
        // Non-special added tokens default to normalized matching, specials to raw.
        const normalized = typeof value.normalized === 'boolean' ? value.normalized : value.special !== true;
        return { id, spec: { content: value.content, normalized } };
      })
      .sort((a, b) => a.id - b.id);
    for (const { id, spec } of decoderEntries) {
      register(spec, id);
      if (id > maxId) maxId = id;
    }

    const idOf = (spec: ResolvedSpecial, key: string): number => {
      const id = vocab.get(spec.content) ?? added.get(spec.content)?.id;
      if (id === undefined) {
        const origin = spec.file ?? vocabPath;
        throw new TokenizerError(`tokenizer file ${origin}: ${key} "${spec.content}" is not in ${vocabPath}`, origin);
      }
      return id;
    };
    const specials: Array<[string, string]> = [
      ['bos_token', DEFAULT_BOS],
      ['eos_token', DEFAULT_EOS],
      ['unk_token', DEFAULT_EOS],
      ['pad_token', DEFAULT_EOS],
    ];
    const ids = new Map<string, number>();
    for (const [key, fallback] of specials) {
      const spec = resolveSpecial(sources, key, fallback);
      const id = idOf(spec, key);
      ids.set(key, id);
      register(spec, id);
    }
    for (const { file, json } of sources) {
      const extra = json.additional_special_tokens;
      if (extra === undefined || extra === null) continue;
      if (!Array.isArray(extra)) {
        throw new TokenizerError(`tokenizer file malformed: ${file}: "additional_special_tokens" is not an array`, file);
      }
      for (const entry of extra) {
        const spec = parseTokenSpec(entry, file, 'additional_special_tokens');
        if (spec) register(spec, idOf({ ...spec, file }, 'additional_special_tokens'));
      }
      // Like transformers, the highest-priority file that lists extras defines them.
      break;
    }

    let modelMaxLength = DEFAULT_MAX_LENGTH;
    const rawMax = config?.json.model_max_length;
    if (rawMax !== undefined && rawMax !== null) {
      const usable = typeof rawMax === 'number' && Number.isFinite(rawMax) && rawMax >= 2;
      if (!usable || (rawMax <= MAX_SANE_MAX_LENGTH && !Number.isInteger(rawMax))) {
        throw new TokenizerError(`tokenizer file malformed: ${configPath}: model_max_length must be an integer >= 2`, configPath);
      }
      if (rawMax <= MAX_SANE_MAX_LENGTH) modelMaxLength = rawMax;
    }

    let vocabSize = vocab.size;
    for (const [content] of added) if (!vocab.has(content)) vocabSize++;

    const unkTokenId = ids.get('unk_token') ?? 0;
    const symbols = byteSymbols();
    const byteIds = new Int32Array(256);
    const byteEndIds = new Int32Array(256);
    for (let b = 0; b < 256; b++) {
      const sym = symbols[b] ?? '';
      byteIds[b] = vocab.get(sym) ?? unkTokenId;
      byteEndIds[b] = vocab.get(sym + '</w>') ?? unkTokenId;
    }

    const idSpan = maxId + 1;
    const merges = parseMerges(mergesText ?? '', mergesPath, vocab, idSpan);

    const addedIds = new Map<string, number>();
    const raw: string[] = [];
    const normalizedTokens: string[] = [];
    for (const [content, { id, normalized }] of added) {
      addedIds.set(content, id);
      (normalized ? normalizedTokens : raw).push(content);
    }

    return new ClipTokenizer({
      modelMaxLength,
      bosTokenId: ids.get('bos_token') ?? 0,
      eosTokenId: ids.get('eos_token') ?? 0,
      padTokenId: ids.get('pad_token') ?? 0,
      unkTokenId,
      vocabSize,
      idSpan,
      byteIds,
      byteEndIds,
      merges,
      addedIds,
      rawAdded: alternation(raw),
      normalizedAdded: alternation(normalizedTokens),
    });
  }

  /** BOS + tokens + EOS, truncated to modelMaxLength, not padded. */
  encode(text: string): number[] {
    const limit = this.modelMaxLength - 2;
    const out: number[] = [this.bosTokenId];
    // The extra slot for BOS lets every stage stop early once enough content exists.
    this.splitAdded(text, this.rawAdded, out, limit + 1, (piece) => {
      this.splitAdded(normalize(piece), this.normalizedAdded, out, limit + 1, (norm) => this.appendWords(norm, out, limit + 1));
    });
    if (out.length > limit + 1) out.length = limit + 1;
    out.push(this.eosTokenId);
    return out;
  }

  /** encode(), right-padded with padTokenId to exactly modelMaxLength. */
  encodePadded(text: string): number[] {
    const ids = this.encode(text);
    while (ids.length < this.modelMaxLength) ids.push(this.padTokenId);
    return ids;
  }

  /** The content tokens of `text` (no BOS/EOS), not truncated: prompt-syntax.ts chunks them itself. */
  tokens(text: string): number[] {
    const out: number[] = [];
    this.splitAdded(text, this.rawAdded, out, Infinity, (piece) => {
      this.splitAdded(normalize(piece), this.normalizedAdded, out, Infinity, (norm) => this.appendWords(norm, out, Infinity));
    });
    return out;
  }

  /** Emits added tokens as ids and hands the text between them to `rest`. */
  private splitAdded(text: string, matcher: RegExp | null, out: number[], limit: number, rest: (piece: string) => void): void {
    if (matcher === null) {
      rest(text);
      return;
    }
    let pos = 0;
    matcher.lastIndex = 0;
    for (let m = matcher.exec(text); m !== null && out.length < limit; m = matcher.exec(text)) {
      if (m.index > pos) rest(text.slice(pos, m.index));
      if (out.length >= limit) return;
      const id = this.addedIds.get(m[0]);
      if (id !== undefined) out.push(id);
      pos = m.index + m[0].length;
    }
    if (pos < text.length && out.length < limit) rest(text.slice(pos));
  }

  private appendWords(text: string, out: number[], limit: number): void {
    const re = this.pretoken;
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null && out.length < limit; m = re.exec(text)) {
      for (const id of this.bpe(m[0])) out.push(id);
    }
  }

  private bpe(word: string): readonly number[] {
    const cached = this.cache.get(word);
    if (cached !== undefined) return cached;

    const bytes = this.utf8.encode(word);
    const last = bytes.length - 1;
    const symbols = new Array<number>(bytes.length);
    for (let i = 0; i < last; i++) symbols[i] = this.byteIds[bytes[i] ?? 0] ?? this.unkTokenId;
    symbols[last] = this.byteEndIds[bytes[last] ?? 0] ?? this.unkTokenId;

    const { rank, left, right, merged } = this.merges;
    const span = this.idSpan;
    let length = symbols.length;
    while (length > 1) {
      let best = Infinity;
      let at = -1;
      for (let i = 0; i + 1 < length; i++) {
        const r = rank.get((symbols[i] ?? 0) * span + (symbols[i + 1] ?? 0));
        if (r !== undefined && r < best) {
          best = r;
          at = i;
        }
      }
      if (at < 0) break;
      // A rank names one pair, so its first occurrence is `at`; merge every
      // non-overlapping occurrence left to right, compacting in place.
      const a = left[best];
      const b = right[best];
      const m = merged[best] ?? 0;
      let w = at;
      let i = at;
      while (i < length) {
        if (i + 1 < length && symbols[i] === a && symbols[i + 1] === b) {
          symbols[w++] = m;
          i += 2;
        } else {
          symbols[w++] = symbols[i++] ?? 0;
        }
      }
      length = w;
    }
    symbols.length = length;

    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(word, symbols);
    return symbols;
  }
}
