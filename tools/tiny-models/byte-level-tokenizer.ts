import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { byteSymbols } from '../../server/sd/tokenizer.js';

/** Bytes CLIP keeps as themselves come first in its vocabulary, the remapped ones after. */
function clipByteOrder(): number[] {
  const printable = (b: number): boolean => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const all = [...Array(256).keys()];
  return [...all.filter(printable), ...all.filter((b) => !printable(b))];
}

/**
 * A valid CLIP BPE tokenizer folder with no merges: every byte is its own token (vocab 256 + 256 "</w>" forms +
 * BOS + EOS). Placeholder models use it so that generating them needs no tokenizer files from elsewhere.
 */
export async function writeByteLevelTokenizer(dir: string): Promise<void> {
  const symbols = byteSymbols();
  const vocab: Record<string, number> = {};
  const order = clipByteOrder();
  order.forEach((b, i) => {
    vocab[symbols[b]!] = i;
    vocab[`${symbols[b]!}</w>`] = 256 + i;
  });
  vocab['<|startoftext|>'] = 512;
  vocab['<|endoftext|>'] = 513;
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'vocab.json'), JSON.stringify(vocab));
  await writeFile(path.join(dir, 'merges.txt'), '#version: 0.2\n');
  await writeFile(
    path.join(dir, 'special_tokens_map.json'),
    JSON.stringify({ bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', pad_token: '<|endoftext|>' }, null, 2),
  );
  await writeFile(
    path.join(dir, 'tokenizer_config.json'),
    JSON.stringify({ model_max_length: 77, do_lower_case: true, tokenizer_class: 'CLIPTokenizer' }, null, 2),
  );
}
