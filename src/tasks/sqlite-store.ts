import Database from "better-sqlite3";
import type { ListOptions, OutboxKind, OutboxMessage, OutboxRow, TaskStore } from "./store.js";
import type { Task } from "./task.js";

/** A database this server cannot use; the message names the file. Nothing was changed in it. */
export class StoreError extends Error {
  override name = "StoreError";
}

/**
 * Schema migrations: MIGRATIONS[i] takes the schema from version i to i + 1 (`PRAGMA user_version`).
 * Append only: a released migration never changes.
 */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE tasks (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     id TEXT NOT NULL UNIQUE,
     status TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     completed_at INTEGER,
     data TEXT NOT NULL
   );
   CREATE INDEX tasks_unfinished ON tasks(status) WHERE status IN ('queued', 'running');
   CREATE INDEX tasks_finished ON tasks(completed_at) WHERE completed_at IS NOT NULL;`,
  `CREATE TABLE outbox (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     task_id TEXT NOT NULL,
     kind TEXT NOT NULL,
     target TEXT NOT NULL,
     body TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     attempts INTEGER NOT NULL DEFAULT 0,
     next_attempt_at INTEGER NOT NULL,
     delivered_at INTEGER,
     last_error TEXT,
     UNIQUE (task_id, kind)
   );
   CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE delivered_at IS NULL;`,
  `ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT 'local';
   CREATE INDEX tasks_owner ON tasks(owner, seq);`,
  `ALTER TABLE tasks ADD COLUMN session_id TEXT;
   ALTER TABLE tasks ADD COLUMN parent_session_id TEXT;
   UPDATE tasks SET session_id = json_extract(data, '$.session_id'), parent_session_id = json_extract(data, '$.parent_session_id');
   CREATE INDEX tasks_session ON tasks(session_id) WHERE session_id IS NOT NULL;
   CREATE INDEX tasks_parent ON tasks(parent_session_id, status) WHERE parent_session_id IS NOT NULL;`,
];
export const SCHEMA_VERSION = MIGRATIONS.length;

interface OutboxRecord {
  id: number;
  task_id: string;
  kind: OutboxKind;
  target: string;
  body: string;
  attempts: number;
  next_attempt_at: number;
  delivered_at: number | null;
  last_error: string | null;
}

const toOutboxRow = (r: OutboxRecord): OutboxRow => ({
  id: r.id,
  taskId: r.task_id,
  kind: r.kind,
  target: r.target,
  body: r.body,
  attempts: r.attempts,
  nextAttemptAt: r.next_attempt_at,
  deliveredAt: r.delivered_at,
  lastError: r.last_error,
});

type TaskRow = { owner: string; data: string };
// The owner column is the truth; fields added after a row was written get their defaults here.
function parse(row: TaskRow | undefined): Task | undefined {
  if (!row) return undefined;
  const task = JSON.parse(row.data) as Task;
  task.owner = row.owner;
  task.depth ??= 1;
  return task;
}

/** The embedded store: SQLite in WAL mode, one row per task (the task as JSON) plus the outbox. */
export class SqliteTaskStore implements TaskStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #put: (task: Task, outbox?: OutboxMessage) => void;
  readonly #statements;

  /** Opens (creating or migrating) the database at `path`; ":memory:" for a throwaway one. */
  constructor(path: string) {
    this.path = path;
    this.#db = openUsable(path);
    this.#db.pragma("journal_mode = WAL");
    this.#db.pragma("synchronous = NORMAL");
    this.#db.pragma("busy_timeout = 5000");
    migrate(this.#db);
    const db = this.#db;
    this.#statements = {
      upsert: db.prepare(
        `INSERT INTO tasks (id, owner, status, created_at, completed_at, session_id, parent_session_id, data)
         VALUES (@id, @owner, @status, @created_at, @completed_at, @session_id, @parent_session_id, @data)
         ON CONFLICT(id) DO UPDATE SET status = excluded.status, completed_at = excluded.completed_at,
           session_id = excluded.session_id, data = excluded.data`,
      ),
      enqueue: db.prepare(
        `INSERT INTO outbox (task_id, kind, target, body, created_at, next_attempt_at)
         VALUES (@taskId, @kind, @target, @body, @now, @now) ON CONFLICT(task_id, kind) DO NOTHING`,
      ),
      get: db.prepare<[string], TaskRow>("SELECT owner, data FROM tasks WHERE id = ?"),
      list: db.prepare<[number, number], TaskRow>("SELECT owner, data FROM tasks ORDER BY seq DESC LIMIT ? OFFSET ?"),
      listOwned: db.prepare<[string, number, number], TaskRow>(
        "SELECT owner, data FROM tasks WHERE owner = ? ORDER BY seq DESC LIMIT ? OFFSET ?",
      ),
      unfinished: db.prepare<[], TaskRow>("SELECT owner, data FROM tasks WHERE status IN ('queued', 'running') ORDER BY seq"),
      count: db.prepare<[], { n: number }>("SELECT count(*) AS n FROM tasks"),
      bySession: db.prepare<[string], TaskRow>("SELECT owner, data FROM tasks WHERE session_id = ?"),
      descendants: db.prepare<[string], TaskRow>(
        `WITH RECURSIVE tree(id, session_id) AS (
           SELECT id, session_id FROM tasks WHERE parent_session_id = ?
           UNION SELECT t.id, t.session_id FROM tasks t JOIN tree ON t.parent_session_id = tree.session_id
         )
         SELECT owner, data FROM tasks WHERE id IN (SELECT id FROM tree) ORDER BY seq DESC`,
      ),
      unfinishedChildren: db.prepare<[string, string], { n: number }>(
        "SELECT count(*) AS n FROM tasks WHERE parent_session_id = ? AND status IN ('queued', 'running') AND id <> ?",
      ),
      batch: db.prepare<[string, string], { task_id: string }>(
        `SELECT task_id FROM outbox WHERE target = ? AND kind = 'parent_record'
           AND id > coalesce((SELECT max(id) FROM outbox WHERE target = ? AND kind = 'parent_prompt'), 0) ORDER BY id`,
      ),
      pruneOld: db.prepare("DELETE FROM tasks WHERE completed_at IS NOT NULL AND completed_at < ?"),
      pruneExcess: db.prepare(
        `DELETE FROM tasks WHERE seq IN (
           SELECT seq FROM tasks WHERE completed_at IS NOT NULL ORDER BY seq
           LIMIT max(0, (SELECT count(*) FROM tasks) - ?))`,
      ),
      pruneOutbox: db.prepare("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND task_id NOT IN (SELECT id FROM tasks)"),
      due: db.prepare<[number], OutboxRecord>(
        "SELECT * FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= ? ORDER BY id",
      ),
      outboxFor: db.prepare<[string], OutboxRecord>("SELECT * FROM outbox WHERE task_id = ? ORDER BY id"),
      attempt: db.prepare("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?"),
      delivered: db.prepare("UPDATE outbox SET delivered_at = ?, last_error = NULL WHERE id = ?"),
      failed: db.prepare("UPDATE outbox SET last_error = ?, next_attempt_at = ? WHERE id = ?"),
    };
    this.#put = db.transaction((task: Task, outbox?: OutboxMessage) => {
      this.#statements.upsert.run({
        id: task.id,
        owner: task.owner,
        session_id: task.session_id,
        parent_session_id: task.parent_session_id,
        status: task.status,
        created_at: task.created_at,
        completed_at: task.completed_at,
        data: JSON.stringify(task),
      });
      if (outbox) this.#statements.enqueue.run({ ...outbox, now: Date.now() });
    });
  }

  put(task: Task, outbox?: OutboxMessage): void {
    this.#put(task, outbox);
  }

  get(id: string): Task | undefined {
    return parse(this.#statements.get.get(id));
  }

  list({ limit = -1, offset = 0, owner }: ListOptions = {}): Task[] {
    const max = Number.isFinite(limit) ? limit : -1;
    const rows = owner === undefined ? this.#statements.list.all(max, offset) : this.#statements.listOwned.all(owner, max, offset);
    return rows.map((row) => parse(row)!);
  }

  unfinished(): Task[] {
    return this.#statements.unfinished.all().map((row) => parse(row)!);
  }

  count(): number {
    return this.#statements.count.get()!.n;
  }

  findBySession(sessionID: string): Task | undefined {
    return parse(this.#statements.bySession.get(sessionID));
  }

  descendantsOf(sessionID: string): Task[] {
    return this.#statements.descendants.all(sessionID).map((row) => parse(row)!);
  }

  unfinishedChildren(parentSessionID: string, exceptTaskId: string): number {
    return this.#statements.unfinishedChildren.get(parentSessionID, exceptTaskId)!.n;
  }

  recordedSinceLastWake(target: string): string[] {
    return this.#statements.batch.all(target, target).map((r) => r.task_id);
  }

  prune({ finishedBefore, maxTasks }: { finishedBefore: number; maxTasks: number }): number {
    return this.#db.transaction(() => {
      const removed = this.#statements.pruneOld.run(finishedBefore).changes + this.#statements.pruneExcess.run(maxTasks).changes;
      if (removed > 0) this.#statements.pruneOutbox.run();
      return removed;
    })();
  }

  dueOutbox(now: number): OutboxRow[] {
    return this.#statements.due.all(now).map(toOutboxRow);
  }

  outboxFor(taskId: string): OutboxRow[] {
    return this.#statements.outboxFor.all(taskId).map(toOutboxRow);
  }

  beginAttempt(id: number): void {
    this.#statements.attempt.run(id);
  }

  markDelivered(id: number, at: number): void {
    this.#statements.delivered.run(at, id);
  }

  markAttemptFailed(id: number, error: string, nextAttemptAt: number): void {
    this.#statements.failed.run(error.slice(0, 2_000), nextAttemptAt, id);
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}

/**
 * Opens the database, refusing (before any write) a file that is not an SQLite database or whose
 * schema is newer than this code knows.
 */
function openUsable(path: string): Database.Database {
  let db: Database.Database | undefined;
  try {
    db = new Database(path);
    // Reads every page once: damaged task pages are found now, not by a later query.
    const check = db.pragma("quick_check", { simple: true });
    if (check !== "ok") throw new Error(`integrity check failed: ${String(check)}`);
  } catch (error) {
    db?.close();
    throw new StoreError(
      `${path} is not a usable task database (${(error as Error).message}); move it away or use another --data-dir. The file was not modified.`,
    );
  }
  const version = db.pragma("user_version", { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    db.close();
    throw new StoreError(
      `${path} has schema version ${version}, newer than this version of background-agents-mcp understands (${SCHEMA_VERSION}); ` +
        `upgrade background-agents-mcp or use another --data-dir. The file was not modified.`,
    );
  }
  return db;
}

function migrate(db: Database.Database): void {
  const from = db.pragma("user_version", { simple: true }) as number;
  for (let version = from; version < SCHEMA_VERSION; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version]!);
      db.pragma(`user_version = ${version + 1}`);
    })();
  }
}
