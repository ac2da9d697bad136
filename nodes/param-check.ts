import type { ParamDef } from './define.js';
import type { GraphIssue } from './graph-format.js';

/**
 * Whether one param value fits its definition (type, range, options, length, pattern, confined path). The server's
 * validator and the client library's graph builder both use it, so a graph the builder accepts passes the server's
 * param checks.
 */

export type ParamProblem = Omit<GraphIssue, 'node' | 'field'>;

/** Checks one param value against its definition; undefined when it is fine. */
export function checkParamValue(pdef: ParamDef, value: unknown): ParamProblem | undefined {
  const actual = describe(value);
  switch (pdef.kind) {
    case 'int':
    case 'float': {
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        return { code: 'param_type', message: `must be a finite ${pdef.kind === 'int' ? 'integer' : 'number'}`, expected: pdef.kind, actual };
      }
      if (pdef.kind === 'int' && !Number.isInteger(value)) {
        return { code: 'param_type', message: 'must be an integer', expected: 'int', actual };
      }
      if (value < pdef.min || value > pdef.max) {
        return { code: 'param_range', message: `out of range`, expected: `${pdef.min} … ${pdef.max}`, actual };
      }
      return undefined;
    }
    case 'bool':
      return typeof value === 'boolean' ? undefined : { code: 'param_type', message: 'must be true or false', expected: 'bool', actual };
    case 'enum':
      if (typeof value !== 'string') return { code: 'param_type', message: 'must be a string', expected: pdef.options.join(' | '), actual };
      return pdef.options.includes(value) ? undefined : { code: 'param_range', message: 'not one of the options', expected: pdef.options.join(' | '), actual };
    case 'string':
      if (typeof value !== 'string') return { code: 'param_type', message: 'must be a string', expected: 'string', actual };
      if (pdef.maxLength !== undefined && value.length > pdef.maxLength) {
        return { code: 'param_range', message: 'too long', expected: `≤ ${pdef.maxLength} characters`, actual: `${value.length} characters` };
      }
      if (pdef.pattern !== undefined && !new RegExp(pdef.pattern).test(value)) {
        return { code: 'param_range', message: 'not an allowed value', expected: `text matching /${pdef.pattern}/`, actual };
      }
      return undefined;
    case 'path': {
      if (typeof value !== 'string') return { code: 'param_type', message: 'must be a path string', expected: 'string', actual };
      if (value.trim() === '' && pdef.emptyMeans !== undefined) return undefined;
      if (value.trim() === '') return { code: 'param_range', message: `a path under the ${pdef.root} root is required`, expected: 'a relative path', actual };
      if (!isConfined(value)) {
        return { code: 'path_escape', message: `path escapes the ${pdef.root} root`, expected: `a relative path inside the ${pdef.root} folder`, actual };
      }
      if (pdef.extensions && !pdef.extensions.some((e) => value.toLowerCase().endsWith(e))) {
        return { code: 'param_range', message: 'wrong file type', expected: pdef.extensions.join(' | '), actual };
      }
      return undefined;
    }
  }
}

/**
 * True when a user-given relative path stays inside its root (lexically: no absolute path, no drive letter, no `..`
 * escape once `.` and `..` are resolved). Written without node:path so browsers and the client library can use it;
 * a leading backslash counts as absolute, as it does on Windows.
 */
export function isConfined(rel: string): boolean {
  if (rel.includes('\0') || /^[/\\]/.test(rel) || /^[a-zA-Z]:/.test(rel)) return false;
  let depth = 0;
  for (const segment of rel.split(/[/\\]/)) {
    if (segment === '' || segment === '.') continue;
    if (segment !== '..') depth += 1;
    else if (depth === 0) return false;
    else depth -= 1;
  }
  return true;
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : value === undefined ? 'nothing' : JSON.stringify(value) ?? String(value);
}
