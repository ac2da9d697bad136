import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ClipTokenizer, TokenizerError } from '../../server/sd/tokenizer.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtureDir = path.resolve(repoRoot, 'server', 'sd', 'clip-tokenizer');

const BOS = 49406;
const EOS = 49407;

function padded(ids: number[], pad: number, length = 77): number[] {
  return [...ids, ...new Array<number>(length - ids.length).fill(pad)];
}

async function withTempCopy<T>(edit: (dir: string) => Promise<void>, body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-tok-'));
  try {
    await cp(fixtureDir, dir, { recursive: true });
    await edit(dir);
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('ClipTokenizer (SD 1.x fixture)', () => {
  let tok: ClipTokenizer;

  before(async () => {
    tok = await ClipTokenizer.fromFolder(fixtureDir);
  });

  it('reads the special ids and sizes from the folder', () => {
    assert.equal(tok.bosTokenId, BOS);
    assert.equal(tok.eosTokenId, EOS);
    assert.equal(tok.padTokenId, EOS);
    assert.equal(tok.modelMaxLength, 77);
    assert.equal(tok.vocabSize, 49408);
  });

  // sd-onnx.md §4.6
  const docVectors: Array<[string, number[]]> = [
    ['How are you doing?', [BOS, 829, 631, 592, 1960, 286, EOS]],
    ['a photo of an astronaut riding a horse on mars', [BOS, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, EOS]],
    ['', [BOS, EOS]],
    ['Hello World', [BOS, 3306, 1002, EOS]],
    ['The company was founded in 2016.', [BOS, 518, 2634, 739, 12240, 530, 273, 271, 272, 277, 269, EOS]],
  ];
  for (const [text, ids] of docVectors) {
    it(`matches the reference vector for ${JSON.stringify(text)}`, () => {
      assert.deepEqual(tok.encode(text), ids);
      const withPad = tok.encodePadded(text);
      assert.equal(withPad.length, 77);
      assert.deepEqual(withPad, padded(ids, EOS));
    });
  }

  // Expected ids below come from an independent string-based implementation of the
  // same spec, cross-checked against the doc vectors above.
  const cases: Array<[string, string, number[]]> = [
    ['accents', 'café déjà vu', [BOS, 15304, 25466, 73, 21259, 13230, EOS]],
    ['decomposed accents (NFD input)', 'cafe\u0301 de\u0301ja\u0300 vu', [BOS, 15304, 25466, 73, 21259, 13230, EOS]],
    [
      'Greek with a final capital sigma lowercased per character',
      'naïve Ελληνικά ΟΔΟΣ',
      [BOS, 1097, 35689, 563, 138, 113, 138, 119, 138, 119, 138, 115, 138, 121, 138, 117, 138, 118, 138, 361, 138, 123, 138, 112, 138, 123, 139, 481, EOS],
    ],
    ['CJK', '日本語のテキスト', [BOS, 39121, 44353, 34002, 252, 21575, 2429, 228, 47121, 32421, 486, EOS]],
    ['dotted capital I', 'İstanbul', [BOS, 328, 16384, 11231, EOS]],
    ['digits one by one', '1234567890 x2', [BOS, 272, 273, 274, 275, 276, 277, 278, 279, 280, 271, 343, 273, EOS]],
    ['emoji, skin tone and flag', 'a cat 😺 with 👍🏽 and 🇯🇵', [BOS, 320, 2368, 40613, 593, 43722, 537, 26527, EOS]],
    ["don't", "don't", [BOS, 847, 713, EOS]],
    ["it's", "it's", [BOS, 585, 568, EOS]],
    ['apostrophe + long s is not a contraction', "it'\u017f", [BOS, 585, 262, 129, 379, EOS]],
    ['uppercase contractions', "DON'T IT'S we're I'll they've I'm he'd", [BOS, 847, 713, 585, 568, 649, 982, 328, 1342, 889, 1200, 328, 880, 797, 1896, EOS]],
    ['extra whitespace, tabs and newlines', '  a \t photo\n\nof   a\r\ncat  ', [BOS, 320, 1125, 539, 320, 2368, EOS]],
    ['uppercase', 'A PHOTO OF AN ASTRONAUT', [BOS, 320, 1125, 539, 550, 18376, EOS]],
    ['BOM is a symbol, NEL is whitespace', '\ufeffhello\u0085world', [BOS, 171, 119, 379, 3306, 1002, EOS]],
    ['literal <|endoftext|> mid-text', 'a cat<|endoftext|>a dog', [BOS, 320, 2368, EOS, 320, 1929, EOS]],
    ['literal <|endoftext|> after punctuation', 'x.<|endoftext|>', [BOS, 343, 269, EOS, EOS]],
    ['literal <|startoftext|>', '<|startoftext|>hi', [BOS, BOS, 1883, EOS]],
    ['"!" is ordinary BPE when it is not the pad token', 'hi!!', [BOS, 1883, 748, EOS]],
  ];
  for (const [name, text, ids] of cases) {
    it(`encodes ${name}`, () => {
      assert.deepEqual(tok.encode(text), ids);
    });
  }

  it('gives the same ids on a second (cached) call', () => {
    const text = 'a photo of an astronaut riding a horse on mars';
    assert.deepEqual(tok.encode(text), tok.encode(text));
  });

  it('truncates a long prompt to 77 ids with EOS last', () => {
    const text = Array.from({ length: 10 }, () => 'a beautiful painting of a castle on a hill').join(' ');
    const phrase = [320, 1215, 3086, 539, 320, 3540, 525, 320, 2682];
    const content = Array.from({ length: 10 }, () => phrase).flat().slice(0, 75);
    const expected = [BOS, ...content, EOS];
    const ids = tok.encode(text);
    assert.equal(ids.length, 77);
    assert.deepEqual(ids, expected);
    assert.deepEqual(tok.encodePadded(text), expected);
  });

  it('keeps EOS last when truncation cuts through a multi-token word', () => {
    // 100 emoji form one punctuation pre-token of 200 BPE pieces.
    const pieces = Array.from({ length: 38 }, () => [668, 118]).flat().slice(0, 75);
    assert.deepEqual(tok.encode('😺'.repeat(100)), [BOS, ...pieces, EOS]);
  });
});

describe('ClipTokenizer (SD 2.x-style folder, pad "!")', () => {
  let tok: ClipTokenizer;
  let tempDir: string;

  before(async () => {
    tempDir = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-tok-sd2-'));
    await cp(fixtureDir, tempDir, { recursive: true });
    const mapPath = path.join(tempDir, 'special_tokens_map.json');
    const map = JSON.parse(await readFile(mapPath, 'utf8')) as Record<string, unknown>;
    map.pad_token = '!';
    // SD 2.x serialises bos/eos as AddedToken objects.
    map.bos_token = { content: '<|startoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false };
    map.eos_token = { content: '<|endoftext|>', lstrip: false, normalized: true, rstrip: false, single_word: false };
    await writeFile(mapPath, JSON.stringify(map));
    const configPath = path.join(tempDir, 'tokenizer_config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
    config.pad_token = { __type: 'AddedToken', content: '!', normalized: false };
    await writeFile(configPath, JSON.stringify(config));
    tok = await ClipTokenizer.fromFolder(tempDir);
  });

  after(async () => {
    await rm(tempDir, { recursive: true, force: true });
  });

  it('pads with "!" = 0', () => {
    assert.equal(tok.padTokenId, 0);
    assert.equal(tok.eosTokenId, EOS);
    assert.deepEqual(tok.encodePadded('Hello World'), padded([BOS, 3306, 1002, EOS], 0));
  });

  it('turns every "!" into id 0 instead of BPE', () => {
    assert.deepEqual(tok.encode('hi!!'), [BOS, 1883, 0, 0, EOS]);
    assert.deepEqual(tok.encode('wow! a cat!'), [BOS, 2781, 0, 320, 2368, 0, EOS]);
  });

  it('still encodes the reference vectors', () => {
    assert.deepEqual(tok.encode('How are you doing?'), [BOS, 829, 631, 592, 1960, 286, EOS]);
    assert.deepEqual(tok.encode('a cat<|endoftext|>'), [BOS, 320, 2368, EOS, EOS]);
  });
});

describe('ClipTokenizer errors', () => {
  it('names the missing vocab.json', async () => {
    await withTempCopy(
      (dir) => rm(path.join(dir, 'vocab.json')),
      async (dir) => {
        const file = path.join(dir, 'vocab.json');
        await assert.rejects(ClipTokenizer.fromFolder(dir), (err: unknown) => {
          assert.ok(err instanceof TokenizerError);
          assert.equal(err.message, `tokenizer file missing: ${file}`);
          assert.equal(err.file, file);
          return true;
        });
      },
    );
  });

  it('names the missing merges.txt', async () => {
    await withTempCopy(
      (dir) => rm(path.join(dir, 'merges.txt')),
      async (dir) => {
        await assert.rejects(ClipTokenizer.fromFolder(dir), (err: unknown) => {
          assert.ok(err instanceof TokenizerError);
          assert.match(err.message, /missing: .*merges\.txt$/);
          return true;
        });
      },
    );
  });

  it('names a malformed JSON file', async () => {
    await withTempCopy(
      (dir) => writeFile(path.join(dir, 'tokenizer_config.json'), '{ not json'),
      async (dir) => {
        const file = path.join(dir, 'tokenizer_config.json');
        await assert.rejects(ClipTokenizer.fromFolder(dir), (err: unknown) => {
          assert.ok(err instanceof TokenizerError);
          assert.ok(err.message.includes(file), err.message);
          assert.equal(err.file, file);
          return true;
        });
      },
    );
  });

  it('names a merges.txt with a malformed line', async () => {
    await withTempCopy(
      (dir) => writeFile(path.join(dir, 'merges.txt'), '#version: 0.2\ni n\nthis line is bad\n'),
      async (dir) => {
        await assert.rejects(ClipTokenizer.fromFolder(dir), (err: unknown) => {
          assert.ok(err instanceof TokenizerError);
          assert.match(err.message, /merges\.txt: line 3/);
          return true;
        });
      },
    );
  });

  it('works without the optional special-token files', async () => {
    await withTempCopy(
      async (dir) => {
        await rm(path.join(dir, 'special_tokens_map.json'));
        await rm(path.join(dir, 'tokenizer_config.json'));
      },
      async (dir) => {
        const tok = await ClipTokenizer.fromFolder(dir);
        assert.equal(tok.padTokenId, EOS);
        assert.equal(tok.modelMaxLength, 77);
        assert.deepEqual(tok.encode('Hello World'), [BOS, 3306, 1002, EOS]);
      },
    );
  });
});
