/**
 * Property-based attacks on a running server, shared by the bounded test (test/server/fuzz.test.ts, in npm test)
 * and the long run (`npm run fuzz`, tools/fuzz/run.ts): graphs mutated from the bundled ones, WebSocket frames and
 * file names. Each case checks what the server must always do; the counts by status code are returned.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import fc from 'fast-check';
import WebSocket from 'ws';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The model folder with `num_train_timesteps: 1e9` that fuzzServer writes (server.ts; issue 27). */
const HOSTILE_MODEL = 'timesteps-1e9';

/** The bundled graphs, with every LoadModel pointed at `model` when given (so admission reads a real folder). */
export function bundledGraphs(model?: string): Record<string, unknown>[] {
  const dir = path.join(REPO, 'graphs');
  return readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((f) => {
    const g = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as { nodes: Record<string, { type: string; params?: Record<string, unknown> }> };
    if (model) for (const n of Object.values(g.nodes)) if (n.type === 'LoadModel') n.params = { ...n.params, path: model };
    return g;
  });
}

/** Names that have broken lookups before: built-in property names, path tricks, odd characters. */
const TRICKY = [
  '__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '', ' ', '..', '../x', '/etc/passwd',
  'a/b', 'C:\\x', '%2e%2e', 'x\u0000y', '\u202e', 'ñ', '🙂', 'a'.repeat(300), 'model', 'latent', 'noise', 'image',
];
const name = fc.oneof(fc.constantFrom(...TRICKY), fc.string({ maxLength: 12 }));
const scalar = fc.oneof(
  fc.constantFrom(0, -1, 1, 7, 33, 999, 1000, 1001, 4096, 8192, 2 ** 31, 2 ** 53, -0, 0.5, 1e308, -1e308, null, true, false, '', '8', '1e3'),
  fc.integer({ min: -5000, max: 10000 }),
  fc.double({ noNaN: true }),
  fc.string({ maxLength: 20 }),
  fc.constantFrom(...TRICKY),
);
const value = fc.oneof({ weight: 4, arbitrary: scalar }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) });

type Mutation = (g: Record<string, unknown>) => void;
type Nodes = Record<string, Record<string, unknown> & { params?: Record<string, unknown>; inputs?: Record<string, unknown> }>;

const pick = <T>(xs: readonly T[], i: number): T | undefined => (xs.length ? xs[i % xs.length] : undefined);
const nodesOf = (g: Record<string, unknown>): Nodes => {
  if (typeof g.nodes !== 'object' || g.nodes === null) g.nodes = {};
  return g.nodes as Nodes;
};

/** In-range values of the params admission checks (sizes, batch, steps): the graph stays valid, the models decide. */
const inRange: fc.Arbitrary<Mutation> = fc
  .tuple(fc.nat(), fc.constantFrom('width', 'height', 'batch', 'steps'), fc.integer({ min: 1, max: 512 }))
  .map(([n, key, k]): Mutation => (g) => {
    const nodes = Object.values(nodesOf(g)).filter((x) => (key === 'steps' ? x.type === 'DDIMStep' : x.type === 'NoiseLatent'));
    const node = pick(nodes, n);
    if (!node) return;
    node.params = { ...(node.params ?? {}), [key]: key === 'steps' ? 1 + ((k * 7) % 1000) : key === 'batch' ? 1 + (k % 64) : 8 * k };
  });

/** One random edit of a graph; several are applied to each case. */
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 6, arbitrary: inRange },
  fc.tuple(fc.nat(), fc.nat(), value).map(([n, p, v]): Mutation => (g) => {
    const node = pick(Object.values(nodesOf(g)), n);
    if (!node) return;
    node.params ??= {};
    const key = pick(Object.keys(node.params), p) ?? 'steps';
    node.params[key] = v;
  }),
  fc.tuple(fc.nat(), name, value).map(([n, k, v]): Mutation => (g) => {
    const node = pick(Object.values(nodesOf(g)), n);
    if (!node) return;
    node.params = { ...(node.params ?? {}), [k]: v };
  }),
  fc.tuple(fc.nat(), fc.nat(), name, name).map(([n, i, target, output]): Mutation => (g) => {
    const node = pick(Object.values(nodesOf(g)), n);
    if (!node) return;
    node.inputs ??= {};
    const key = pick(Object.keys(node.inputs), i) ?? 'model';
    node.inputs[key] = { node: target, output };
  }),
  fc.tuple(fc.nat(), fc.nat(), fc.nat()).map(([n, m, i]): Mutation => (g) => {
    // Rewire an input to another existing node (maybe making a cycle or a type mismatch).
    const nodes = nodesOf(g);
    const ids = Object.keys(nodes);
    const node = pick(Object.values(nodes), n);
    const target = pick(ids, m);
    if (!node || !target) return;
    node.inputs ??= {};
    const key = pick(Object.keys(node.inputs), i) ?? 'latent';
    node.inputs[key] = { node: target, output: pick(['model', 'cond', 'latent', 'noise', 'saliency', 'image'], i)! };
  }),
  fc.tuple(fc.nat(), name).map(([n, k]): Mutation => (g) => {
    const node = pick(Object.values(nodesOf(g)), n);
    if (node) node.inputs = { ...(node.inputs ?? {}), [k]: { node: 'model', output: 'model' } };
  }),
  fc.nat().map((n): Mutation => (g) => {
    const nodes = nodesOf(g);
    const id = pick(Object.keys(nodes), n);
    if (id) delete nodes[id];
  }),
  fc.tuple(fc.nat(), name).map(([n, id]): Mutation => (g) => {
    const nodes = nodesOf(g);
    const from = pick(Object.keys(nodes), n);
    if (from) nodes[id] = structuredClone(nodes[from]!);
  }),
  fc.tuple(fc.nat(), fc.oneof(name, fc.constantFrom('LoadModel', 'NoiseLatent', 'DDIMStep', 'SaveImage', 'SaveLatent', 'LoadLatent', 'Decode'))).map(([n, type]): Mutation => (g) => {
    const node = pick(Object.values(nodesOf(g)), n);
    if (node) node.type = type;
  }),
  fc.tuple(fc.nat(), name, value).map(([n, k, v]): Mutation => (g) => {
    const node = pick(Object.values(nodesOf(g)), n);
    if (node) node[k] = v;
  }),
  fc.tuple(name, value).map(([k, v]): Mutation => (g) => {
    g[k] = v;
  }),
  fc.nat().map((n): Mutation => (g) => {
    // A LoadModel pointed at the folder whose scheduler has 1e9 training timesteps: refused, never a frozen server.
    const node = pick(Object.values(nodesOf(g)).filter((x) => x.type === 'LoadModel'), n);
    if (node) node.params = { ...(node.params ?? {}), path: HOSTILE_MODEL };
  }),
  fc.constantFrom<Mutation>(
    (g) => {
      g.version = 2;
    },
    (g) => {
      g.nodes = [];
    },
    (g) => {
      delete g.format;
    },
  ),
);

export interface Tally {
  readonly byStatus: Record<string, number>;
  readonly failures: string[];
}

const count = (t: Tally, key: string): void => {
  t.byStatus[key] = (t.byStatus[key] ?? 0) + 1;
};

/** What a refused graph must look like: a 4xx with a code, and every issue naming its node or field. */
function checkGraphAnswer(status: number, body: { error?: string; issues?: { node: unknown; field: unknown; code?: unknown; message?: unknown }[] }, t: Tally, graph: unknown): void {
  const problem =
    status >= 500 ? `server error ${status}`
      : ![202, 400, 413, 429].includes(status) ? `unexpected status ${status}`
        : status !== 202 && typeof body.error !== 'string' ? 'error body without a code'
          : status === 400 && body.error === 'invalid_graph' && !body.issues?.length ? 'invalid_graph without issues'
            : body.issues?.some((i) => (i.node === null && i.field === null) || typeof i.code !== 'string' || typeof i.message !== 'string')
              ? `an issue names neither node nor field: ${JSON.stringify(body.issues?.find((i) => i.node === null && i.field === null))}`
              : null;
  if (problem) t.failures.push(`${problem}; graph ${JSON.stringify(graph).slice(0, 400)}`);
}

/**
 * POSTs `runs` mutated bundled graphs to a server whose queue is paused; accepted runs are cancelled at once so
 * the queue stays small. `model` points LoadModel at a real folder in half the cases.
 */
export async function fuzzGraphs(base: string, runs: number, model: string, seed?: number): Promise<Tally> {
  const t: Tally = { byStatus: {}, failures: [] };
  const sources = [...bundledGraphs(), ...bundledGraphs(model)];
  await fc.assert(
    fc.asyncProperty(fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 4 }), async (which, edits) => {
      const graph = structuredClone(sources[which % sources.length]!);
      for (const edit of edits) edit(graph);
      const res = await fetch(`${base}/api/runs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ graph, client_id: 'fuzz' }) });
      const body = (await res.json()) as { run_id?: string; error?: string; issues?: { node: unknown; field: unknown }[] };
      count(t, String(res.status));
      checkGraphAnswer(res.status, body, t, graph);
      if (res.status === 202 && body.run_id) await fetch(`${base}/api/runs/${body.run_id}`, { method: 'DELETE' });
    }),
    { numRuns: runs, ...(seed !== undefined ? { seed } : {}) },
  );
  return t;
}

const frame: fc.Arbitrary<string | Buffer> = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.record({ type: fc.oneof(fc.constantFrom('subscribe', 'unsubscribe', 'ping', '__proto__', 'constructor'), fc.string({ maxLength: 10 })), runs: fc.oneof(fc.constant('all'), fc.array(name, { maxLength: 5 }), value), previews: value }, { requiredKeys: ['type'] }).map((v) => JSON.stringify(v)),
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
);

/** Sends `frames` random frames on one socket (a new one if a frame closes it); each must be answered, nothing may crash. */
export async function fuzzFrames(base: string, frames: number, seed?: number): Promise<Tally> {
  const t: Tally = { byStatus: {}, failures: [] };
  const wsUrl = `${base.replace(/^http/, 'ws')}/ws`;
  let socket: { ws: WebSocket; replies: string[]; waiters: (() => void)[] } | null = null;
  const open = async () => {
    const ws = new WebSocket(wsUrl);
    const s = { ws, replies: [] as string[], waiters: [] as (() => void)[] };
    ws.on('message', (d) => {
      s.replies.push(String(d));
      s.waiters.splice(0).forEach((w) => w());
    });
    ws.on('close', () => s.waiters.splice(0).forEach((w) => w()));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    await new Promise<void>((resolve) => (s.replies.length ? resolve() : s.waiters.push(resolve))); // the snapshot
    s.replies.length = 0;
    return s;
  };
  await fc.assert(
    fc.asyncProperty(frame, async (f) => {
      socket ??= await open();
      const s = socket;
      const before = s.replies.length;
      // A ping after each frame: its pong marks the end of the frame's answer (an unsubscribe has none).
      const ponged = new Promise<void>((resolve) => {
        const check = (): void => {
          if (s.ws.readyState !== WebSocket.OPEN || s.replies.slice(before).some((r) => r === '{"type":"pong"}')) resolve();
          else s.waiters.push(check);
        };
        s.waiters.push(check);
      });
      // Odd-length byte frames go as text frames: mostly invalid UTF-8, which closes the socket (1007).
      s.ws.send(f, { binary: Buffer.isBuffer(f) && f.length % 2 === 0 });
      if (s.ws.readyState === WebSocket.OPEN) s.ws.send('{"type":"ping"}');
      const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 5000).unref());
      const outcome = await Promise.race([ponged, timer]);
      if (s.ws.readyState !== WebSocket.OPEN) {
        count(t, 'closed');
        socket = null;
        return;
      }
      const answer = s.replies.slice(before).map((r) => JSON.parse(r) as { type: string; message?: unknown });
      if (outcome === 'timeout') {
        t.failures.push(`no pong after frame ${JSON.stringify(String(f)).slice(0, 200)}`);
        return;
      }
      const first = answer[0]!;
      const silent = first.type === 'pong' && answer.length === 1;
      if (silent && !String(f).includes('unsubscribe')) t.failures.push(`no answer to frame ${JSON.stringify(String(f)).slice(0, 200)}`);
      count(t, silent ? 'silent (unsubscribe)' : first.type);
      if (first.type === 'error' && typeof first.message !== 'string') t.failures.push('error frame without a message');
    }),
    { numRuns: frames, ...(seed !== undefined ? { seed } : {}) },
  );
  (socket as { ws: WebSocket } | null)?.ws.close();
  return t;
}

/** One deeply nested JSON text: arrays or objects (or both, alternating), `depth` levels, around an optional value. */
const deepJson = fc
  .record({ depth: fc.integer({ min: 65, max: 300_000 }), open: fc.constantFrom('[', '{"a":', '[{"a":'), inner: fc.constantFrom('', '1', '"x"', 'null') })
  .map(({ depth, open, inner }) => {
    const close = open === '[' ? ']' : open === '{"a":' ? '}' : '}]';
    const levels = open === '[{"a":' ? Math.ceil(depth / 2) : depth;
    return { depth, text: `${open.repeat(levels)}${inner || (open === '[' ? '' : '1')}${close.repeat(levels)}` };
  });

/** A PNG (1×1, no pixel data worth decoding) whose `fusegraph` iTXt chunk holds `text`, each chunk with its right CRC. */
function pngWithText(text: string): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
    return Buffer.concat([head, data, crc]);
  };
  const ihdr = Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
    chunk('iTXt', Buffer.concat([Buffer.from('fusegraph\0\0\0\0\0', 'latin1'), Buffer.from(text, 'utf8')])), chunk('IEND', Buffer.alloc(0)),
  ]);
}

/**
 * Deeply nested JSON wherever the server reads JSON from outside (issue 27): as a POST /api/runs body, as a PNG's
 * graph chunk and as a WebSocket frame. Each must be refused naming the depth limit (400 json_too_deep, or an error
 * frame), and the server must answer a plain request sent alongside it.
 */
export async function fuzzDeepJson(base: string, cases: number, seed?: number): Promise<Tally> {
  const t: Tally = { byStatus: {}, failures: [] };
  const names = /deeper than the limit of \d+ levels/;
  const wsUrl = `${base.replace(/^http/, 'ws')}/ws`;
  await fc.assert(
    fc.asyncProperty(deepJson, fc.constantFrom('body', 'png', 'frame'), async ({ depth, text }, where) => {
      const health = fetch(`${base}/api/queue`).then((r) => r.status);
      let answer: { status: string; message: string };
      if (where === 'frame') {
        if (text.length + 40 > 1024 * 1024) return; // over the frame size limit: refused by the WebSocket library
        const ws = new WebSocket(wsUrl);
        answer = await new Promise((resolve, reject) => {
          ws.on('message', (d) => {
            const f = JSON.parse(String(d)) as { type: string; message?: string };
            if (f.type === 'error') resolve({ status: 'error', message: String(f.message) });
          });
          ws.once('open', () => ws.send(`{"type":"subscribe","runs":${text}}`));
          ws.once('error', reject);
          ws.once('close', () => resolve({ status: 'closed', message: '' }));
        });
        ws.close();
      } else {
        const res = await fetch(`${base}${where === 'body' ? '/api/runs' : '/api/graph-from-png'}`, {
          method: 'POST',
          headers: { 'content-type': where === 'body' ? 'application/json' : 'image/png' },
          body: where === 'body' ? `{"graph":${text}}` : new Uint8Array(pngWithText(text)),
        });
        const body = (await res.json()) as { error?: string; message?: string };
        answer = { status: `${res.status} ${body.error ?? ''}`, message: String(body.message) };
      }
      count(t, `${where} ${answer.status}`);
      const ok = where === 'frame' ? answer.status === 'error' : answer.status === '400 json_too_deep';
      if (!ok || !names.test(answer.message)) t.failures.push(`${where} of depth ${depth}: ${answer.status} ${answer.message.slice(0, 200)}`);
      if ((await health) !== 200) t.failures.push(`no health answer alongside a ${where} of depth ${depth}`);
    }),
    { numRuns: cases, ...(seed !== undefined ? { seed } : {}) },
  );
  return t;
}

/** GETs output files and bundled graphs by random names: 400 bad_name or 404, never a 5xx or a file outside the roots. */
export async function fuzzNames(base: string, names: number, seed?: number): Promise<Tally> {
  const t: Tally = { byStatus: {}, failures: [] };
  await fc.assert(
    fc.asyncProperty(fc.constantFrom('/api/images/', '/api/latents/', '/api/graphs/'), fc.oneof(name, fc.string({ maxLength: 40 }).map((s) => `${s}.png`), fc.constantFrom('..%2f..%2fetc%2fpasswd', '%2e%2e', '.hidden.png', 'a%00.png')), async (route, n) => {
      let url: string;
      try {
        url = `${base}${route}${/%[0-9a-f]{2}/i.test(n) ? n : encodeURIComponent(n)}`;
      } catch {
        return; // a lone surrogate cannot be encoded into a URL at all
      }
      const res = await fetch(url);
      count(t, String(res.status));
      const text = await res.text();
      if (res.status >= 500) t.failures.push(`server error ${res.status} for ${url}`);
      else if (res.status === 200 && route !== '/api/graphs/') t.failures.push(`served ${url}`);
      else if (text.includes('root:')) t.failures.push(`leaked a system file for ${url}`);
    }),
    { numRuns: names, ...(seed !== undefined ? { seed } : {}) },
  );
  return t;
}
