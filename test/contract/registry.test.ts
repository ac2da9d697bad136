import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BlendNoise, DDIMStep, NODE_DEFS, PER_STEP_SOCKETS } from '../../nodes/index.js';
import type { NodeDefOf, NodeType } from '../../nodes/index.js';
import { IMPLEMENTATIONS, implementationOf } from '../../server/impls/index.js';
import type { TypedImpl } from '../../server/impls/types.js';
import { implement } from '../../server/impls/types.js';

test('every node definition has an implementation of the matching kind, and nothing else is registered', () => {
  const rows = NODE_DEFS.map((def) => {
    const impl = implementationOf(def.type);
    const outputs = Object.values(def.outputs) as { type: string }[];
    const perStep = outputs.length > 0 && outputs.every((o) => PER_STEP_SOCKETS.has(o.type as never));
    return { type: def.type, impl: impl?.kind ?? 'missing', expected: perStep ? 'per-step' : 'once' };
  });
  for (const row of rows) assert.equal(row.impl, row.expected, `${row.type}: implementation ${row.impl}, expected ${row.expected}`);
  assert.deepEqual(Object.keys(IMPLEMENTATIONS).sort(), NODE_DEFS.map((d) => d.type).sort());
  for (const [type, impl] of Object.entries(IMPLEMENTATIONS)) assert.equal(impl.type, type);
});

test('lookups by untrusted names never reach prototype members', () => {
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) assert.equal(implementationOf(name), undefined);
});

// Compile-time guarantees: `npm test` type-checks this file, and each @ts-expect-error fails the build if the line compiles.
export function compileTimeChecks(): void {
  // @ts-expect-error a registry without one of the defined types does not compile
  const missing: { readonly [T in NodeType]: TypedImpl<NodeDefOf<T>> } = { ...IMPLEMENTATIONS, DDIMStep: undefined };
  // @ts-expect-error BlendNoise outputs NOISE, a per-step value: a once implementation does not compile
  implement(BlendNoise, { kind: 'once', cacheable: false, run: async () => ({ noise: undefined as never }) });
  // @ts-expect-error DDIMStep outputs a LATENT: a per-step implementation does not compile
  implement(DDIMStep, { kind: 'per-step', evaluate: async () => undefined });
  // @ts-expect-error an implementation registered under another type's name does not compile
  const swapped: { readonly [T in NodeType]: TypedImpl<NodeDefOf<T>> } = { ...IMPLEMENTATIONS, DDIMStep: IMPLEMENTATIONS.Decode };
  void missing;
  void swapped;
}
