import assert from 'node:assert/strict';

/** Relative L2 distance of `got` from the reference `want` (‖got − want‖ / ‖want‖): how the reference tests state tolerances. */
export function relL2(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length, 'compared arrays differ in length');
  let num = 0;
  let den = 0;
  for (let i = 0; i < got.length; i++) {
    num += (got[i]! - want[i]!) ** 2;
    den += want[i]! ** 2;
  }
  return Math.sqrt(num / den);
}
