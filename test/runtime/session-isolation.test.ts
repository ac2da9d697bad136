import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openChannel, SESSION_ISOLATIONS } from '../../server/runtime/session-channel.js';
import { SessionCallAborted } from '../../server/runtime/session-host.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import type { SdModel, Tensor32 } from '../../server/sd/sd-model.js';
import type { TinyWorkspace } from '../helpers/tiny-models.js';
import { tinyWorkspace } from '../helpers/tiny-models.js';

/** Both places a model's sessions can run (--session-isolation): same numbers, same cancel and release behaviour. */
describe('session isolation: process and thread', () => {
  let ws: TinyWorkspace;
  before(async () => {
    ws = await tinyWorkspace({ m: { seed: 7, unetWidth: 64, unetDepth: 4 } });
  });
  after(() => ws.cleanup());

  const latent = (side: number): Tensor32 => ({
    data: new Float32Array(2 * 4 * side * side).map((_, i) => Math.sin(i * 0.37)),
    shape: [2, 4, side, side],
  });
  const outputs = new Map<string, Float32Array>();

  for (const isolation of SESSION_ISOLATIONS) {
    describe(isolation, () => {
      let models: ModelManager;
      let model: SdModel;
      before(async () => {
        models = new ModelManager({ threads: 1, isolation });
        model = await models.acquire(path.join(ws.models, 'm'), 'cpu');
      });
      after(() => models.dispose());

      it('runs the text encoder and the UNet', async () => {
        const ctx = await model.encodeText([model.tokenizer.encodePadded(''), model.tokenizer.encodePadded('a red star')]);
        const eps = await model.predict(latent(8), 501, ctx);
        assert.equal(eps.length, 2 * 4 * 8 * 8);
        outputs.set(isolation, eps);
      });

      for (const when of ['before it is sent', 'while it computes'] as const) {
        it(`abandons a call cancelled ${when} at once, then serves the next call`, async () => {
          const ctx = await model.encodeText([model.tokenizer.encodePadded(''), model.tokenizer.encodePadded(when)]);
          const controller = new AbortController();
          const call = model.predict(latent(128), 501, ctx, controller.signal);
          // After a turn of the event loop the request (with the new conditioning) is on its way to the worker.
          if (when === 'while it computes') await new Promise((resolve) => setImmediate(resolve));
          const t0 = performance.now();
          controller.abort();
          await assert.rejects(call, SessionCallAborted);
          assert.ok(performance.now() - t0 < 100, 'the caller does not wait for the call');
          // The conditioning reaches the worker that serves the next call, whether or not the cancelled one sent it.
          assert.equal((await model.predict(latent(8), 501, ctx)).length, 2 * 4 * 8 * 8);
        });
      }
    });
  }

  it('gives bit-identical results either way', () => {
    const [a, b] = SESSION_ISOLATIONS.map((i) => outputs.get(i));
    assert.ok(a && b);
    assert.deepEqual(b, a);
  });
});

/**
 * A session process ends in three parts — the process, its IPC channel, its error output — and its end ('close')
 * comes only when all three have. Whoever waits must hold the event loop by all three: held by the process alone,
 * nothing holds the loop between the process being reaped and its pipes' ends being read (the likely cause of a CI
 * run whose test file ended with the server's close() still pending).
 */
describe('session process and the event loop', () => {
  /** What holds the event loop: [pipes, processes]. */
  const holding = (): [number, number] => {
    const held = process.getActiveResourcesInfo();
    return [held.filter((r) => r === 'PipeWrap').length, held.filter((r) => r === 'ProcessWrap').length];
  };
  const plus = ([pipes, processes]: [number, number]): [number, number] => [pipes + 2, processes + 1];

  it('is not held by an idle session process, and is held by all of it while a call waits and until it has ended', async () => {
    const base = holding();
    let why = '';
    const channel = openChannel('process', { message: () => undefined, exit: (w) => (why = w) });
    try {
      assert.deepEqual(holding(), base, 'an idle server can exit');
      channel.ref();
      assert.deepEqual(holding(), plus(base), 'a waiting call holds the process, its channel and its error output');
      channel.unref();
      assert.deepEqual(holding(), base);
      const closed = channel.close();
      assert.deepEqual(holding(), plus(base), 'closing holds all three until each has ended');
      await closed;
      assert.match(why, /^session process was ended by SIGKILL/);
      assert.equal(channel.alive, false);
    } finally {
      await channel.close();
    }
  });
});
