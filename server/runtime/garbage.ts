import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | null | undefined;

/**
 * A full garbage collection, now. V8 collects when its own heap asks for it, but a large tensor's memory lives
 * outside that heap: after a run that ran out of memory, hundreds of MiB of such arrays can stay allocated until some
 * later JavaScript allocation happens to trigger a collection, and allocations outside V8 meanwhile (a thread libvips
 * starts to write a PNG, a native buffer) fail. `--expose-gc` set at run time gives a new context the gc function.
 */
export function collectGarbage(): void {
  if (gc === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as () => void;
    } catch {
      gc = null; // not offered by this runtime: V8 collects on its own schedule
    }
  }
  gc?.();
}
