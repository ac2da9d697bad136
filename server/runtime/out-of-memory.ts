/**
 * Recognises a failure to allocate memory, wherever it happened: ONNX Runtime's arena or allocator inside a session
 * call ("Failed to allocate memory for requested buffer of size N", a C++ bad_alloc turned into a status), or V8
 * refusing an ArrayBuffer in JavaScript ("Array buffer allocation failed", or a length beyond what it can hold), a
 * message that cannot be serialised for lack of memory, or a session process that V8 or the system ended for it
 * (session-channel.ts). Such a run fails with a clear "out of memory" error; the server itself keeps serving.
 */
const PATTERNS = [
  /Failed to allocate memory for requested buffer of size (\d+)/,
  /bad_alloc/,
  /Array buffer allocation failed/,
  /Invalid array buffer length/,
  /Invalid typed array length/,
  // Node's structured clone of a message too large for the memory left (a session process's answer or request).
  /Data cannot be cloned, out of memory/,
  // V8's fatal error when its own heap or an allocation it cannot fail runs out, as a session process's last words.
  /process out of memory/,
  /JavaScript heap out of memory/,
  /session process ran out of memory/,
];

export interface OutOfMemory {
  /** The allocation that failed, in bytes, when the message says. */
  readonly bytes: number | null;
}

/** The out-of-memory failure in `err` or its causes, or null when it is some other error. */
export function outOfMemory(err: unknown): OutOfMemory | null {
  const seen = new Set<unknown>();
  for (let e = err; e !== undefined && e !== null && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e);
    const message = typeof e === 'string' ? e : (e as { message?: unknown }).message;
    if (typeof message !== 'string') continue;
    for (const p of PATTERNS) {
      const m = p.exec(message);
      if (m) return { bytes: m[1] !== undefined ? Number(m[1]) : null };
    }
  }
  return null;
}
