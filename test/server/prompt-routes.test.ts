/**
 * The prompt widget's routes on a real server: POST /api/prompt/tokens counts tokens per 75-token chunk with the
 * bundled CLIP vocabulary and ComfyUI's syntax (an embedding as its vectors, a missing one as 1), GET /api/embeddings
 * lists models/embeddings by the names `embedding:NAME` takes.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { writeSafetensors } from '../../server/checkpoint/formats/safetensors-writer.js';
import type { RunningServer } from '../../server/http/start.js';
import { EmbeddingListSchema, ErrorBodySchema, PromptTokensSchema } from '../../nodes/protocol.js';
import { api, serverPerSuite, type Sandbox } from './helpers.js';

const WIDTH = 32;

describe('prompt routes', () => {
  let server: RunningServer;
  let sandbox: Sandbox;
  serverPerSuite((s) => ({ server, sandbox } = s));

  before(async () => {
    const dir = path.join(sandbox.modelsRoot, 'embeddings');
    await mkdir(path.join(dir, 'styles'), { recursive: true });
    await writeSafetensors(path.join(dir, 'three.safetensors'), [{ name: 'emb_params', dtype: 'F32', shape: [3, WIDTH], data: new Float32Array(3 * WIDTH) }]);
    await writeSafetensors(path.join(dir, 'styles', 'ink.safetensors'), [{ name: 'emb_params', dtype: 'F32', shape: [2, WIDTH], data: new Float32Array(2 * WIDTH) }]);
  });

  const count = async (text: string) => {
    const res = await api(server.url, '/api/prompt/tokens', { body: { text } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return PromptTokensSchema.parse(res.body);
  };

  test('a short prompt is one chunk of its tokens', async () => {
    assert.deepEqual(await count('a red star on the left'), { chunks: [6], missing: [] });
    assert.deepEqual((await count('a photo of an astronaut riding a horse')).chunks, [8]);
    assert.deepEqual((await count('')).chunks, [0]);
  });

  test('a 100-token prompt is two chunks: 75 and 25', async () => {
    assert.deepEqual((await count(Array.from({ length: 100 }, () => 'a').join(' '))).chunks, [75, 25]);
  });

  test('an embedding counts as its vectors; a missing one as 1, and is named', async () => {
    assert.deepEqual(await count('a embedding:three star'), { chunks: [5], missing: [] });
    assert.deepEqual(await count('(embedding:styles/ink:1.2) star'), { chunks: [3], missing: [] });
    assert.deepEqual(await count('a embedding:nope star'), { chunks: [3], missing: ['nope'] });
  });

  test('GET /api/embeddings lists names without extension, nested ones as sub/name', async () => {
    const res = await api(server.url, '/api/embeddings');
    assert.equal(res.status, 200);
    assert.deepEqual(EmbeddingListSchema.parse(res.body).embeddings, ['styles/ink', 'three']);
  });

  test('a bad body is a 400 naming the field', async () => {
    for (const body of [{ text: 5 }, {}, { text: 'a'.repeat(10_001) }]) {
      const res = await api(server.url, '/api/prompt/tokens', { body });
      assert.equal(res.status, 400, JSON.stringify(body));
      const err = ErrorBodySchema.parse(res.body);
      assert.equal(err.error, 'bad_request');
      assert.match(err.message, /text/, err.message);
    }
    const extra = await api(server.url, '/api/prompt/tokens', { body: { text: 'a', mode: 'x' } });
    assert.equal(extra.status, 400);
    assert.match(ErrorBodySchema.parse(extra.body).message, /mode/);
    const notJson = await api(server.url, '/api/prompt/tokens', { raw: 'text=a', headers: { 'content-type': 'text/plain' } });
    assert.equal(notJson.status, 415);
  });
});
