import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { NODE_DEFS } from '../../nodes/index.js';
import { REPO_ROOT } from '../helpers/graphs.js';

/**
 * The folders' one-way dependency order, lowest first. A module may import from its own folder or from a folder of a
 * lower layer, never upwards and never sideways into another folder of its own layer.
 */
const LAYERS: readonly (readonly string[])[] = [
  ['nodes'],
  ['server/engine', 'server/sampler', 'server/onnx-writer'],
  ['server/runtime'],
  ['server/checkpoint'],
  ['server/sd'],
  ['server/impls'],
  ['server/execution'],
  ['server/services'],
  ['server/http'],
  ['server/cli'],
];
/** The editor and the client library run in browsers and scripts: they may use the contract and nothing of the server. */
const MAY_USE: Readonly<Record<string, readonly string[]>> = { client: ['nodes', 'client'], sdk: ['nodes', 'sdk'] };

function folderOf(file: string): string {
  const rel = path.relative(REPO_ROOT, file).split(path.sep).join('/');
  if (rel === 'server/cli.ts') return 'server/cli';
  const parts = rel.split('/');
  return parts[0] === 'server' ? `${parts[0]}/${parts[1]}` : parts[0]!;
}

function layerOf(folder: string): number {
  const i = LAYERS.findIndex((l) => l.includes(folder));
  return i;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(ts|tsx|js)$/.test(e.name))
    .map((e) => path.join(e.parentPath, e.name));
}

/** Every source file the layering covers. */
function layeredSources(): string[] {
  const roots = ['nodes', 'server', 'client', 'sdk'].map((r) => path.join(REPO_ROOT, r));
  return [...new Set(roots.flatMap(sources))];
}

/** The code of a file without its comments, so that prose may name anything. */
function codeOf(file: string): string {
  return readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

test('only server/runtime/ imports onnxruntime-node', () => {
  const wrong = layeredSources()
    .filter((f) => !path.relative(REPO_ROOT, f).split(path.sep).join('/').startsWith('server/runtime/'))
    .filter((f) => /(?:from\s+|import\s*\(\s*|import\s+)['"]onnxruntime-(?:node|web|common)['"]/.test(codeOf(f)))
    .map((f) => path.relative(REPO_ROOT, f));
  assert.deepEqual(wrong, []);
});

test('node type names appear only in their definitions and implementations: engine, routing and editor read the definitions', () => {
  const names = NODE_DEFS.map((d) => d.type);
  const quoted = new RegExp(`['"\`](${names.join('|')})['"\`]`, 'g');
  const allowed = (rel: string) => rel.startsWith('nodes/defs/') || rel.startsWith('server/impls/') || rel === 'nodes/index.ts';
  const wrong: string[] = [];
  for (const file of layeredSources()) {
    const rel = path.relative(REPO_ROOT, file).split(path.sep).join('/');
    if (allowed(rel)) continue;
    for (const m of codeOf(file).matchAll(quoted)) wrong.push(`${rel}: ${m[0]}`);
  }
  assert.deepEqual(wrong, []);
});

test('folders depend one way: nodes → engine → runtime → checkpoint → sd → impls → execution → services → http → cli; the editor and the client library on nodes only', () => {
  const files = [...sources(path.join(REPO_ROOT, 'nodes')), ...sources(path.join(REPO_ROOT, 'server')), ...sources(path.join(REPO_ROOT, 'client')), ...sources(path.join(REPO_ROOT, 'sdk')), path.join(REPO_ROOT, 'server', 'cli.ts')];
  const wrong: string[] = [];
  for (const file of new Set(files)) {
    const from = folderOf(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"](\.{1,2}\/[^'"]+)['"]/g)) {
      const to = folderOf(path.resolve(path.dirname(file), m[1]!));
      if (to === from) continue;
      const ok = Object.hasOwn(MAY_USE, from)
        ? MAY_USE[from]!.includes(to)
        : layerOf(to) >= 0 && layerOf(from) >= 0 && layerOf(to) < layerOf(from);
      if (!ok) wrong.push(`${path.relative(REPO_ROOT, file)} (${from}) imports ${m[1]} (${to})`);
    }
  }
  assert.deepEqual(wrong, []);
});
