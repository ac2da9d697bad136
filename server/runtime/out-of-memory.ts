/**
 * Recognises a failure to allocate memory, wherever it happened: ONNX Runtime's arena or allocator inside a session
 * call ("Failed to allocate memory for requested buffer of size N", a C++ bad_alloc turned into a status), or V8
 * refusing an ArrayBuffer in JavaScript ("Array buffer allocation failed", or a length beyond what it can hold).
 * Such a run fails with a clear "out of memory" error; the process itself keeps serving.
 */
const PATTERNS = [
  /Failed to allocate memory for requested buffer of size (\d+)/,
  /bad_alloc/,
  /Array buffer allocation failed/,
  /Invalid array buffer length/,
  /Invalid typed array length/,
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
