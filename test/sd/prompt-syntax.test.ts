/**
 * ComfyUI's prompt syntax on the real CLIP tokenizer (server/sd/clip-tokenizer). Each row is worked out by hand from
 * comfy/sd1_clip.py's rules (escape_important → parse_parentheses → token_weights → split on spaces → `word</w>` in
 * the vocabulary, else the word's BPE tokens → 77-token chunks), not by running ComfyUI: the ids are the words' CLIP
 * ids (cat 2368, dog 1929, a 320, "(" 263, ")" 264, ":" 281, "1" 272, "." 269, …), the weights the products the
 * rules give (1.1 * 1.1 is what Python's weight *= 1.1 computes twice).
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { BUNDLED_CLIP_TOKENIZER } from '../../server/sd/checkpoint-folder.js';
import { parseParentheses, pythonFloat, tokenizePrompt, weightedText, type PromptToken } from '../../server/sd/prompt-syntax.js';
import { ClipTokenizer } from '../../server/sd/tokenizer.js';

const BOS = 49406;
const EOS = 49407;
let tokenizer: ClipTokenizer;
before(async () => {
  tokenizer = await ClipTokenizer.fromFolder(BUNDLED_CLIP_TOKENIZER);
});

/** Embeddings the lookup knows: name → vector count. */
const EMBEDDINGS: Record<string, number> = { foo: 2, bar: 1, 'sub/baz': 3 };
const vectors = (name: string): number | null => (Object.hasOwn(EMBEDDINGS, name) ? EMBEDDINGS[name]! : null);

type Expected = [number | string, number];
const E = (name: string, vector: number): string => `${name}#${vector}`;
const W11 = 1.1;
const W121 = 1.1 * 1.1;

/** [prompt, content tokens as [id or "embedding#vector", weight], missing embeddings]. */
const TABLE: [string, Expected[], string[]?][] = [
  ['', []],
  ['a cat', [[320, 1], [2368, 1]]],
  ['(cat)', [[2368, W11]]],
  ['((cat))', [[2368, W121]]],
  ['(((cat)))', [[2368, 1.1 * 1.1 * 1.1]]],
  ['(cat:1.3)', [[2368, 1.3]]],
  ['(a cat:0.5)', [[320, 0.5], [2368, 0.5]]],
  // The outer group's text "(cat:1.5)" ends in "1.5)", no number: ×1.1 then the inner group sets 1.5.
  ['((cat:1.5))', [[2368, 1.5]]],
  // The outer group sets 1.5 and the inner one multiplies it.
  ['((cat):1.5)', [[2368, 1.5 * 1.1]]],
  ['(cat:1.2) dog', [[2368, 1.2], [1929, 1]]],
  ['a (red:1.2) (blue:0.8) house', [[320, 1], [736, 1.2], [1746, 0.8], [1212, 1]]],
  // Escaped brackets are text: the word "(cat)" has no vocabulary entry, so its BPE tokens.
  ['\\(cat\\)', [[263, 1], [2368, 1], [264, 1]]],
  ['\\((cat)\\)', [[263, 1], [2368, W11], [264, 1]]],
  ['(cat\\))', [[2368, W11], [264, W11]]],
  // Unbalanced: a "(" never closed stays in its word, weight 1.
  ['(cat', [[263, 1], [2368, 1]]],
  ['cat)', [[2368, 1], [264, 1]]],
  // A ")" with nothing open sends the nesting below zero: the "(b)" after it is text too.
  ['a) (b)', [[320, 1], [264, 1], [263, 1], [321, 1], [264, 1]]],
  // "(a (b) c" never closes its first "(": the whole text is one unweighted stretch, (b) included.
  ['(a (b) c', [[263, 1], [320, 1], [263, 1], [321, 1], [264, 1], [322, 1]]],
  ['(a) b)', [[320, W11], [321, 1], [264, 1]]],
  [')(cat)', [[27956, 1], [2368, 1], [264, 1]]],
  // Not a number after the colon: ×1.1 and the colon stays.
  ['(cat:abc)', [[2368, W11], [281, W11], [5334, W11]]],
  // A colon at the start is not a weight (ComfyUI: rfind(":") > 0).
  ['(:1.5)', [[281, W11], [272, W11], [269, W11], [276, W11]]],
  // Python's float(): spaces, exponents and underscores.
  ['(cat: 1.5 )', [[2368, 1.5]]],
  ['(cat:1e-1)', [[2368, 0.1]]],
  ['(cat:1_0)', [[2368, 10]]],
  ['(cat:-1)', [[2368, -1]]],
  // The last colon holds the weight.
  ['(a:1.2:1.3)', [[320, 1.3], [281, 1.3], [272, 1.3], [269, 1.3], [273, 1.3]]],
  ['(time 12:30)', [[788, 30], [272, 30], [273, 30]]],
  ['()', []],
  ['cat\ndog', [[2368, 1], [1929, 1]]],
  ['a  cat ', [[320, 1], [2368, 1]]],
  ['Cat', [[2368, 1]]],
  ['\\cat', [[315, 1], [2368, 1]]],
  ['embedding:foo', [[E('foo', 0), 1], [E('foo', 1), 1]]],
  ['(embedding:foo:1.2) cat', [[E('foo', 0), 1.2], [E('foo', 1), 1.2], [2368, 1]]],
  // "foo," is no embedding, "foo" is: its vectors, then the comma as a word.
  ['embedding:foo, cat', [[E('foo', 0), 1], [E('foo', 1), 1], [267, 1], [2368, 1]]],
  ['embedding:sub/baz embedding:bar', [[E('sub/baz', 0), 1], [E('sub/baz', 1), 1], [E('sub/baz', 2), 1], [E('bar', 0), 1]]],
  ['((embedding:bar))', [[E('bar', 0), W121]]],
  // Missing: left out of the tokens (as ComfyUI skips it) and reported.
  ['embedding:nope cat', [[2368, 1]], ['nope']],
  ['cat embedding:', [[2368, 1]], ['']],
];

function content(chunks: readonly (readonly PromptToken[])[]): Expected[] {
  const out: Expected[] = [];
  for (const chunk of chunks) {
    assert.equal(chunk.length, 77);
    assert.deepEqual('id' in chunk[0]! && chunk[0].id, BOS);
    for (const t of chunk.slice(1)) {
      if ('id' in t && t.id === EOS) break;
      out.push(['id' in t ? t.id : E(t.embedding, t.vector), t.weight]);
    }
  }
  return out;
}

describe('ComfyUI prompt syntax: token ids and weights', () => {
  test(`the table has ${TABLE.length} prompts`, () => assert.ok(TABLE.length >= 30));
  for (const [prompt, expected, missing = []] of TABLE) {
    test(JSON.stringify(prompt), () => {
      const t = tokenizePrompt(prompt, tokenizer, vectors);
      assert.deepEqual(content(t.chunks), expected);
      assert.deepEqual(t.missing, missing);
      assert.equal(t.chunks.length, 1);
      assert.deepEqual(t.counts, [expected.length]);
      // Everything after the content is EOS then padding (the SD-1 tokenizer pads with EOS), all at weight 1.
      const tail = t.chunks[0]!.slice(1 + expected.length);
      assert.ok(tail.every((x) => 'id' in x && x.id === EOS && x.weight === 1));
    });
  }

  test('parse_parentheses keeps unbalanced brackets as text', () => {
    assert.deepEqual(parseParentheses('a (b) c'), ['a ', '(b)', ' c']);
    assert.deepEqual(parseParentheses('a) (b)'), ['a) (b)']);
    assert.deepEqual(parseParentheses('((a)'), ['((a)']);
    assert.deepEqual(weightedText('x (y:0.5) z').segments, [{ text: 'x ', weight: 1 }, { text: 'y', weight: 0.5 }, { text: ' z', weight: 1 }]);
  });

  test("Python's float(): what a weight may be written as", () => {
    for (const [s, v] of [['1', 1], [' 1.5 ', 1.5], ['.5', 0.5], ['1.', 1], ['+2', 2], ['1E2', 100], ['1_000', 1000]] as const) assert.equal(pythonFloat(s), v, s);
    for (const s of ['', 'abc', '1.5)', '1__0', '_1', '1e', '0x10', '1,5']) assert.equal(pythonFloat(s), null, s);
    assert.equal(pythonFloat('inf'), Infinity);
    assert.ok(Number.isNaN(pythonFloat('nan')));
  });

  test('a weight that is not finite is reported', () => {
    assert.deepEqual(tokenizePrompt('(cat:inf) (dog:nan)', tokenizer, vectors).badWeights, ['inf', 'nan']);
  });
});

describe('77-token chunks as ComfyUI packs them', () => {
  const cats = (n: number): string => Array.from({ length: n }, () => 'cat').join(' ');

  test('75 tokens fill one chunk exactly', () => {
    const t = tokenizePrompt(cats(75), tokenizer, vectors);
    assert.deepEqual(t.counts, [75]);
    assert.equal(t.chunks[0]![76]!.weight, 1);
    assert.deepEqual('id' in t.chunks[0]![76]! && t.chunks[0]![76]!.id, EOS);
  });

  test('the 76th token starts a second chunk', () => {
    const t = tokenizePrompt(cats(76), tokenizer, vectors);
    assert.deepEqual(t.counts, [75, 1]);
    assert.deepEqual(content(t.chunks).length, 76);
  });

  test('a word under 8 tokens that would overflow moves whole to the next chunk (the first is padded)', () => {
    const t = tokenizePrompt(`${cats(74)} 1.5`, tokenizer, vectors);
    assert.deepEqual(t.counts, [74, 3]);
    assert.deepEqual(t.chunks[0]!.slice(75).map((x) => 'id' in x && x.id), [EOS, EOS]);
    assert.deepEqual(t.chunks[1]!.slice(0, 5).map((x) => 'id' in x && x.id), [BOS, 272, 269, 276, EOS]);
  });

  test('a word of 8 tokens or more is split across chunks', () => {
    const t = tokenizePrompt(`${cats(70)} 1.51.51.5`, tokenizer, vectors);
    assert.deepEqual(t.counts, [75, 4]);
    assert.deepEqual(t.chunks[0]!.slice(71).map((x) => 'id' in x && x.id), [272, 269, 276, 272, 269, EOS]);
    assert.deepEqual(t.chunks[1]!.slice(0, 6).map((x) => 'id' in x && x.id), [BOS, 276, 272, 269, 276, EOS]);
  });

  test('a 120-token prompt gives two chunks; weights survive the split', () => {
    const t = tokenizePrompt(`(${cats(60)}:1.2) ${cats(60)}`, tokenizer, vectors);
    assert.deepEqual(t.counts, [75, 45]);
    assert.deepEqual(content(t.chunks).map((x) => x[1]), [...Array<number>(60).fill(1.2), ...Array<number>(60).fill(1)]);
  });

  test('an embedding counts one token per vector', () => {
    const t = tokenizePrompt(`${cats(74)} embedding:foo`, tokenizer, vectors);
    assert.deepEqual(t.counts, [74, 2]);
  });
});

test('a prompt without syntax gives the ids CLIP\'s own tokenizer gives for the whole text, capitals and punctuation included', () => {
  // The fused MagicFusion graphs' prompts: an early word-by-word vocabulary lookup turned "A" into the byte token.
  for (const text of ['A lion with a crown on his head', 'a cartoon lion, anime style, golden crown', 'White sedan SAIC GM Buick Regal 2017', '']) {
    const ids = tokenizePrompt(text, tokenizer, () => null).chunks[0]!.map((t) => ('id' in t ? t.id : -1));
    assert.deepEqual(ids, tokenizer.encodePadded(text), text);
  }
});
