import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Graph } from '../../nodes/graph-format.js';
import { parseGraph } from '../../nodes/graph-format.js';
import type { NodeState, RunError, RunOutput, RunRecord, RunStatus, RunTimings } from '../../nodes/protocol.js';

/** One row of the runs table without its graph, JSON columns decoded: what lists need. */
export interface StoredRunMeta extends RunRecord {
  readonly seq: number;
  readonly attempts: number;
  /** A DELETE arrived while it ran; recorded before the 202, so a restart ends it cancelled instead of re-running it. */
  readonly cancel_requested: boolean;
}

export interface StoredRun extends StoredRunMeta {
  readonly graph: Graph;
}

interface MetaRow {
  seq: number;
  id: string;
  status: RunStatus;
  client_id: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  attempts: number;
  cancel_requested: number;
  outputs: string | null;
  error: string | null;
  timings: string | null;
  node_states: string | null;
  worker: string | null;
}

interface Row extends MetaRow {
  graph: string;
}

export interface RunFinish {
  readonly status: 'done' | 'error' | 'cancelled';
  readonly finished_at: number;
  readonly outputs?: readonly RunOutput[];
  readonly error?: RunError | null;
  readonly timings?: RunTimings | null;
  readonly node_states?: Readonly<Record<string, NodeState>>;
}

const SCHEMA_VERSION = 3;

// `seq` is the queue order; `id` is what clients see. Graphs are stored whole so a restart can re-run them.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS runs (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  id          TEXT NOT NULL UNIQUE,
  status      TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'error', 'cancelled')),
  graph       TEXT NOT NULL,
  client_id   TEXT,
  created_at  INTEGER NOT NULL,
  started_at  INTEGER,
  finished_at INTEGER,
  attempts    INTEGER NOT NULL DEFAULT 0,
  outputs     TEXT,
  error       TEXT,
  timings     TEXT,
  node_states TEXT,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  worker      TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, seq);
CREATE INDEX IF NOT EXISTS runs_by_client ON runs (client_id, seq);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
`;

// Lists leave the graph out: it is the large column, and parsing hundreds of them would make every listing slow.
const META_COLUMNS = 'seq, id, status, client_id, created_at, started_at, finished_at, attempts, cancel_requested, outputs, error, timings, node_states, worker';

function decodeMeta(row: MetaRow): StoredRunMeta {
  return {
    seq: row.seq,
    id: row.id,
    status: row.status,
    client_id: row.client_id,
    created_at: row.created_at,
    started_at: row.started_at,
    finished_at: row.finished_at,
    attempts: row.attempts,
    cancel_requested: row.cancel_requested === 1,
    outputs: row.outputs ? (JSON.parse(row.outputs) as RunOutput[]) : [],
    error: row.error ? (JSON.parse(row.error) as RunError) : null,
    timings: row.timings ? (JSON.parse(row.timings) as RunTimings) : null,
    node_states: row.node_states ? (JSON.parse(row.node_states) as Record<string, NodeState>) : {},
    worker: row.worker,
  };
}

/** Rows written by an older FuseGraph hold older graph versions: they come out migrated, like every graph that enters. */
function decode(row: Row): StoredRun {
  const stored: unknown = JSON.parse(row.graph);
  return { ...decodeMeta(row), graph: parseGraph(stored).graph ?? (stored as Graph) };
}

/** The runs table: queue order, history and results, surviving restarts (ComfyUI keeps both in memory, A4.10). */
export class RunStore {
  private readonly db: Database.Database;

  constructor(dataDir: string) {
    mkdirSync(dataDir, { recursive: true });
    this.db = new Database(join(dataDir, 'fusegraph.sqlite'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 2000');
    // With WAL, NORMAL cannot corrupt the database; a power cut may only lose the last transitions, which a restart re-runs.
    this.db.pragma('synchronous = NORMAL');
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      this.db.close();
      throw new Error(`the database in ${dataDir} was written by a newer FuseGraph (schema ${version}); update FuseGraph`);
    }
    this.db.exec(SCHEMA);
    // Columns later schemas added: cancel_requested (2, durable cancels) and worker (3, scale-out). A fresh database
    // gets them from SCHEMA; an older one gets them here, and an older FuseGraph can still read it.
    const columns = new Set(this.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all('runs') as string[]);
    if (!columns.has('cancel_requested')) this.db.exec('ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0');
    if (!columns.has('worker')) this.db.exec('ALTER TABLE runs ADD COLUMN worker TEXT');
    this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }

  close(): void {
    this.db.close();
  }

  insert(run: { id: string; graph: Graph; client_id: string | null; created_at: number }): void {
    this.db
      .prepare('INSERT INTO runs (id, status, graph, client_id, created_at) VALUES (?, ?, ?, ?, ?)')
      .run(run.id, 'queued', JSON.stringify(run.graph), run.client_id, run.created_at);
  }

  get(id: string): StoredRun | undefined {
    const row = this.db.prepare('SELECT * FROM runs WHERE id = ?').get(id) as Row | undefined;
    return row ? decode(row) : undefined;
  }

  getMeta(id: string): StoredRunMeta | undefined {
    const row = this.db.prepare(`SELECT ${META_COLUMNS} FROM runs WHERE id = ?`).get(id) as MetaRow | undefined;
    return row ? decodeMeta(row) : undefined;
  }

  /** Newest first; `before` is a run id, exclusive, for paging. */
  list(limit: number, before?: string): StoredRunMeta[] {
    const rows = before === undefined
      ? this.db.prepare(`SELECT ${META_COLUMNS} FROM runs ORDER BY seq DESC LIMIT ?`).all(limit)
      : this.db
        .prepare(`SELECT ${META_COLUMNS} FROM runs WHERE seq < (SELECT seq FROM runs WHERE id = ?) ORDER BY seq DESC LIMIT ?`)
        .all(before, limit);
    return (rows as MetaRow[]).map(decodeMeta);
  }

  listByClient(clientId: string, limit: number): StoredRunMeta[] {
    const rows = this.db.prepare(`SELECT ${META_COLUMNS} FROM runs WHERE client_id = ? ORDER BY seq DESC LIMIT ?`).all(clientId, limit);
    return (rows as MetaRow[]).map(decodeMeta);
  }

  /** Oldest first, which for queued runs is the queue order. */
  withStatus(status: RunStatus): StoredRunMeta[] {
    const rows = this.db.prepare(`SELECT ${META_COLUMNS} FROM runs WHERE status = ? ORDER BY seq`).all(status);
    return (rows as MetaRow[]).map(decodeMeta);
  }

  queuedIds(): string[] {
    return this.db.prepare("SELECT id FROM runs WHERE status = 'queued' ORDER BY seq").pluck().all() as string[];
  }

  /** Queued runs ahead of this one; null when it is not queued. */
  position(id: string): number | null {
    const row = this.db
      .prepare(
        `SELECT (SELECT COUNT(*) FROM runs q WHERE q.status = 'queued' AND q.seq < r.seq) AS ahead, r.status AS status
         FROM runs r WHERE r.id = ?`,
      )
      .get(id) as { ahead: number; status: RunStatus } | undefined;
    return row && row.status === 'queued' ? row.ahead : null;
  }

  /**
   * Puts a queued run ahead of every other. `seq` is the queue order, so the run takes a number below all others;
   * history pages stay consistent because they page by the same column.
   */
  moveToFront(id: string): boolean {
    return this.db.prepare("UPDATE runs SET seq = (SELECT MIN(seq) FROM runs) - 1 WHERE id = ? AND status = 'queued'").run(id).changes === 1;
  }

  nextQueued(): StoredRun | undefined {
    const row = this.db.prepare("SELECT * FROM runs WHERE status = 'queued' ORDER BY seq LIMIT 1").get() as Row | undefined;
    return row ? decode(row) : undefined;
  }

  markStarted(id: string, at: number): void {
    this.db.prepare("UPDATE runs SET status = 'running', started_at = ?, attempts = attempts + 1 WHERE id = ?").run(at, id);
  }

  /** Only a queued or running run can finish, so a late result never overwrites a cancellation. */
  markFinished(id: string, f: RunFinish): boolean {
    const info = this.db
      .prepare(
        `UPDATE runs SET status = ?, finished_at = ?, outputs = ?, error = ?, timings = ?, node_states = ?
         WHERE id = ? AND status IN ('queued', 'running')`,
      )
      .run(
        f.status,
        f.finished_at,
        JSON.stringify(f.outputs ?? []),
        f.error ? JSON.stringify(f.error) : null,
        f.timings ? JSON.stringify(f.timings) : null,
        JSON.stringify(f.node_states ?? {}),
        id,
      );
    return info.changes > 0;
  }

  /** Durable before the DELETE is answered: SQLite has the row when the 202 leaves. */
  markCancelRequested(id: string): void {
    this.db.prepare("UPDATE runs SET cancel_requested = 1 WHERE id = ? AND status IN ('queued', 'running')").run(id);
  }

  /** Scale-out: the worker that took the run. */
  setWorker(id: string, worker: string): void {
    this.db.prepare('UPDATE runs SET worker = ? WHERE id = ?').run(worker, id);
  }

  /** Re-queues a run from scratch; the outputs of its interrupted attempt are forgotten (the caller removes the files). */
  requeue(id: string): void {
    this.db.prepare("UPDATE runs SET status = 'queued', started_at = NULL, outputs = NULL WHERE id = ?").run(id);
  }

  /** The files a running run has written so far, stored as they appear: a crash cannot leave them unaccounted for. */
  recordOutputs(id: string, outputs: readonly RunOutput[]): void {
    this.db.prepare("UPDATE runs SET outputs = ? WHERE id = ? AND status = 'running'").run(JSON.stringify(outputs), id);
  }

  /** Of `names`, those that no run other than `except` lists among its outputs (a cached output node re-lists files). */
  unreferenced(names: readonly string[], except: readonly string[]): string[] {
    if (!names.length) return [];
    const held = this.db.prepare(
      `SELECT 1 FROM runs, json_each(runs.outputs) AS o
       WHERE runs.outputs IS NOT NULL AND json_extract(o.value, '$.name') = ? AND runs.id NOT IN (SELECT value FROM json_each(?)) LIMIT 1`,
    );
    const exceptJson = JSON.stringify(except);
    return [...new Set(names)].filter((n) => held.get(n, exceptJson) === undefined);
  }

  /** Queued and running runs of one client (null: runs submitted without a client id). */
  activeCount(clientId: string | null): number {
    const sql = `SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running') AND client_id ${clientId === null ? 'IS NULL' : '= ?'}`;
    const stmt = this.db.prepare(sql).pluck();
    return (clientId === null ? stmt.get() : stmt.get(clientId)) as number;
  }

  /**
   * Finished runs beyond the newest `keepRuns` or finished before `olderThan` (epoch ms), oldest first, at most
   * `limit` of them: what retention removes.
   */
  expired(keepRuns: number | undefined, olderThan: number | undefined, limit: number): StoredRunMeta[] {
    const finished = "status IN ('done', 'error', 'cancelled')";
    const rows = this.db
      .prepare(
        `SELECT ${META_COLUMNS} FROM runs WHERE ${finished} AND (
           (@keep IS NOT NULL AND seq NOT IN (SELECT seq FROM runs WHERE ${finished} ORDER BY seq DESC LIMIT @keep))
           OR (@before IS NOT NULL AND finished_at < @before)
         ) ORDER BY seq LIMIT @limit`,
      )
      .all({ keep: keepRuns ?? null, before: olderThan ?? null, limit });
    return (rows as MetaRow[]).map(decodeMeta);
  }

  delete(ids: readonly string[]): void {
    const stmt = this.db.prepare('DELETE FROM runs WHERE id = ?');
    this.db.transaction(() => {
      for (const id of ids) stmt.run(id);
    })();
  }


  getSetting(key: string): string | undefined {
    const row = this.db.prepare('SELECT value FROM settings WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value;
  }

  setSetting(key: string, value: string): void {
    this.db.prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }
}
