/**
 * Limits on JSON read from outside the server (HTTP bodies, WebSocket frames, PNG chunks, graph files, model folder
 * configs), checked before JSON.parse. JSON.parse itself takes any depth, but what walks the value afterwards
 * (schema checks, structuredClone, the graph migrations) is recursive, and a text of millions of `[` kept the
 * server's one thread busy for seconds (issue 27). No graph or config FuseGraph reads nests deeper than a dozen levels.
 */

export const JSON_LIMITS = {
  /** Arrays and objects nested deeper than this are refused. */
  maxDepth: 64,
  /** Texts longer than this (UTF-16 code units, or bytes for a byte buffer) are refused. */
  maxLength: 16 * 1024 * 1024,
} as const;

export interface JsonLimitOptions {
  readonly maxDepth?: number;
  readonly maxLength?: number;
  /** Names the text in the message ("request body", "the fusegraph PNG chunk", a file name). */
  readonly what?: string;
}

/** A JSON text over a limit of JSON_LIMITS; the message names the limit. */
export class JsonLimitError extends Error {
  constructor(message: string, readonly limit: 'depth' | 'length') {
    super(message);
    this.name = 'JsonLimitError';
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;

/**
 * Throws a JsonLimitError when `text` is longer than the length limit or nests arrays and objects deeper than the
 * depth limit. One linear pass, no recursion, no allocation; it works on UTF-8 bytes as well as on a string (every
 * character it looks at is ASCII, which never occurs inside a multi-byte UTF-8 sequence). Whether the text is valid
 * JSON is left to JSON.parse.
 */
export function checkJsonLimits(text: string | Uint8Array, o: JsonLimitOptions = {}): void {
  const maxDepth = o.maxDepth ?? JSON_LIMITS.maxDepth;
  const maxLength = o.maxLength ?? JSON_LIMITS.maxLength;
  const what = o.what ?? 'JSON text';
  const n = text.length;
  if (n > maxLength) {
    throw new JsonLimitError(`${what} is ${n} ${typeof text === 'string' ? 'characters' : 'bytes'} long, over the limit of ${maxLength}`, 'length');
  }
  const at = typeof text === 'string' ? (i: number) => text.charCodeAt(i) : (i: number) => text[i]!;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < n; i++) {
    const c = at(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > maxDepth) {
        throw new JsonLimitError(`${what} nests arrays and objects deeper than the limit of ${maxDepth} levels (at offset ${i})`, 'depth');
      }
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
}

/** JSON.parse after checkJsonLimits: a JsonLimitError for a text over a limit, JSON.parse's SyntaxError for invalid JSON. */
export function parseJsonLimited(text: string, o: JsonLimitOptions = {}): unknown {
  checkJsonLimits(text, o);
  return JSON.parse(text) as unknown;
}
