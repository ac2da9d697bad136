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

const SCHEMA_VERSION = 1;

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
  worker      TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, seq);
CREATE INDEX IF NOT EXISTS runs_by_client ON runs (client_id, seq);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
`;

// Lists leave the graph out: it is the large column, and parsing hundreds of them would make every listing slow.
const META_COLUMNS = 'seq, id, status, client_id, created_at, started_at, finished_at, attempts, outputs, error, timings, node_states, worker';

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
    // Databases made before scale-out lack the worker column; adding it keeps them readable by older versions too.
    const columns = this.db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all('runs') as string[];
    if (!columns.includes('worker')) this.db.exec('ALTER TABLE runs ADD COLUMN worker TEXT');
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

  /** Scale-out: the worker that took the run. */
  setWorker(id: string, worker: string): void {
    this.db.prepare('UPDATE runs SET worker = ? WHERE id = ?').run(worker, id);
  }

  requeue(id: string): void {
    this.db.prepare("UPDATE runs SET status = 'queued', started_at = NULL WHERE id = ?").run(id);
  }

  getSetting(key: string): string | undefined {
    const row = this.db.prepare('SELECT value FROM settings WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value;
  }

  setSetting(key: string, value: string): void {
    this.db.prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }
}
