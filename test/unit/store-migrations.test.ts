import Database from "better-sqlite3";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MIGRATIONS, SCHEMA_VERSION, SqliteTaskStore, StoreError } from "../../src/tasks/sqlite-store.js";
import { createTask, transition, type Task } from "../../src/tasks/task.js";

let dir: string;
let path: string;
const opened: SqliteTaskStore[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "bam-migrate-"));
  path = join(dir, "tasks.db");
});

afterEach(() => {
  for (const store of opened.splice(0)) store.close();
  rmSync(dir, { recursive: true, force: true });
});

function open(file = path): SqliteTaskStore {
  const store = new SqliteTaskStore(file);
  opened.push(store);
  return store;
}

/** Reads a database file with a plain connection (closed before returning). */
function inspect<T>(file: string, read: (db: Database.Database) => T): T {
  const db = new Database(file, { readonly: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

const schemaOf = (file: string): unknown[] =>
  inspect(file, (db) => db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name").all());

/**
 * What the task JSON looked like in an earlier schema: no `depth` yet, and no `owner` before the owner
 * column (version 3) existed.
 */
function legacyJson(task: Task, withOwner: boolean): string {
  const { owner, depth: _depth, ...rest } = task;
  return JSON.stringify(withOwner ? { ...rest, owner } : rest);
}

/** The columns a table has in the database being built. */
const columnsOf = (db: Database.Database, table: string): string[] =>
  (db.pragma(`table_info(${table})`) as Array<{ name: string }>).map((c) => c.name);

const base = { owner: "ignored", description: "old work", prompt: "do it", agent: "explore", model: null, timeout_ms: null };
const oldDone: Task = transition(
  { ...transition(createTask("old_done", { ...base, parent_session_id: "ses_parent" }, 1_000), "running", 1_100)!, session_id: "ses_old" },
  "completed",
  2_000,
  { result: "the old result" },
)!;
const oldQueued: Task = createTask("old_queued", { ...base, parent_session_id: null, model: { providerID: "p", modelID: "m" } }, 1_500);

/** Builds a database at schema version `k` by running only MIGRATIONS[0..k), with rows that schema allowed. */
function buildAtVersion(k: number): void {
  const db = new Database(path);
  try {
    for (let v = 0; v < k; v++) db.exec(MIGRATIONS[v]!);
    db.pragma(`user_version = ${k}`);
    if (k >= 1) {
      const owned = columnsOf(db, "tasks").includes("owner");
      const insert = owned
        ? db.prepare("INSERT INTO tasks (id, owner, status, created_at, completed_at, data) VALUES (?, 'carol', ?, ?, ?, ?)")
        : db.prepare("INSERT INTO tasks (id, status, created_at, completed_at, data) VALUES (?, ?, ?, ?, ?)");
      for (const task of [oldDone, oldQueued]) {
        const row = owned ? { ...task, owner: "carol" } : task;
        insert.run(task.id, task.status, task.created_at, task.completed_at, legacyJson(row, owned));
      }
    }
    if (k >= 2) {
      db.prepare(
        `INSERT INTO outbox (task_id, kind, target, body, created_at, attempts, next_attempt_at, last_error)
         VALUES ('old_done', 'parent_prompt', 'ses_parent', 'Task old_done finished', 2000, 1, 2500, 'parent busy')`,
      ).run();
    }
  } finally {
    db.close();
  }
}

describe("migrations from an empty database", () => {
  it("creates the latest schema in WAL mode for a file that does not exist yet", () => {
    const store = open();
    expect(store.count()).toBe(0);
    store.put(createTask("t1", { ...base, owner: "local", parent_session_id: null }, 1));
    store.close();

    expect(inspect(path, (db) => db.pragma("user_version", { simple: true }))).toBe(SCHEMA_VERSION);
    expect(inspect(path, (db) => db.pragma("journal_mode", { simple: true }))).toBe("wal");
    const names = (schemaOf(path) as Array<{ name: string }>).map((r) => r.name);
    expect(names).toEqual(expect.arrayContaining(["tasks", "outbox"]));
  });

  it("accepts an existing zero-byte file as an empty database", () => {
    writeFileSync(path, "");
    const store = open();
    expect(store.count()).toBe(0);
    store.close();
    expect(inspect(path, (db) => db.pragma("user_version", { simple: true }))).toBe(SCHEMA_VERSION);
  });

  it("does not run migrations again on a second open", () => {
    const first = open();
    first.put(createTask("t1", { ...base, owner: "local", parent_session_id: null }, 1));
    first.close();
    const schema = schemaOf(path);
    const second = open();
    expect(second.count()).toBe(1);
    second.close();
    expect(schemaOf(path)).toEqual(schema);
    expect(inspect(path, (db) => db.pragma("user_version", { simple: true }))).toBe(SCHEMA_VERSION);
  });

  it("numbers its schema by its migrations", () => {
    expect(SCHEMA_VERSION).toBe(MIGRATIONS.length);
    expect(SCHEMA_VERSION).toBeGreaterThanOrEqual(3);
  });
});

describe("migrations from a previous schema", () => {
  const previous = Array.from({ length: SCHEMA_VERSION }, (_, k) => k);

  it.each(previous)("migrates a version %i database to the latest, keeping its data", (k) => {
    buildAtVersion(k);
    const fresh = join(dir, "fresh.db");
    open(fresh).close();

    const store = open();
    expect(inspect(path, (db) => db.pragma("user_version", { simple: true }))).toBe(SCHEMA_VERSION);
    // the same schema as a database created at the latest version
    expect(schemaOf(path)).toEqual(schemaOf(fresh));

    // rows written before the owner column existed get the default owner
    const owner = k >= 3 ? "carol" : "local";
    if (k >= 1) {
      // the old tasks read back as they were (fields added since get their defaults)
      expect(store.get("old_done")).toEqual({ ...oldDone, owner });
      expect(store.get("old_queued")).toEqual({ ...oldQueued, owner });
      expect(store.list().map((t) => t.id)).toEqual(["old_queued", "old_done"]);
      expect(store.list({ owner })).toHaveLength(2);
      expect(store.unfinished().map((t) => t.id)).toEqual(["old_queued"]);
      expect(store.findBySession("ses_old")).toEqual({ ...oldDone, owner });
    } else {
      expect(store.count()).toBe(0);
    }
    if (k >= 2) {
      expect(store.outboxFor("old_done")).toEqual([
        {
          id: expect.any(Number) as number,
          taskId: "old_done",
          kind: "parent_prompt",
          target: "ses_parent",
          body: "Task old_done finished",
          attempts: 1,
          nextAttemptAt: 2_500,
          deliveredAt: null,
          lastError: "parent busy",
        },
      ]);
    }

    // new writes work: new owners, updates of old tasks, outbox rows
    const mine = createTask("new_task", { ...base, owner: "bob", parent_session_id: "ses_parent" }, 9_000);
    store.put(mine);
    expect(store.get("new_task")).toEqual(mine);
    expect(store.list({ owner: "bob" }).map((t) => t.id)).toEqual(["new_task"]);
    const done = transition(transition(mine, "running", 9_100)!, "completed", 9_200, { result: "ok" })!;
    store.put(done, { taskId: "new_task", kind: "parent_prompt", target: "ses_parent", body: "Task new_task done" });
    expect(store.outboxFor("new_task")).toHaveLength(1);
    if (k >= 1) {
      const started = transition({ ...oldQueued, owner }, "running", 9_300)!;
      store.put(started);
      expect(store.get("old_queued")).toEqual(started);
      expect(store.list().map((t) => t.id)).toEqual(["new_task", "old_queued", "old_done"]);
    }
    expect(store.prune({ finishedBefore: Number.MAX_SAFE_INTEGER, maxTasks: 1_000 })).toBe(k >= 1 ? 2 : 1);

    // and it all survives a reopen
    const count = store.count();
    store.close();
    expect(open().count()).toBe(count);
  });
});

describe("databases this version cannot use", () => {
  /** The file's bytes and the directory's entries, to prove a refused file was not touched. */
  const snapshot = (): { bytes: Buffer; entries: string[] } => ({ bytes: readFileSync(path), entries: readdirSync(dir).sort() });

  function expectRefused(reason: RegExp): void {
    const before = snapshot();
    let error: unknown;
    try {
      open();
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(StoreError);
    expect((error as Error).message).toContain(path);
    expect((error as Error).message).toMatch(reason);
    const after = snapshot();
    expect(after.entries).toEqual(before.entries);
    expect(after.bytes.equals(before.bytes)).toBe(true);
  }

  it("refuses a newer schema, naming the file, without modifying it", () => {
    const db = new Database(path);
    db.exec("CREATE TABLE from_the_future (x TEXT); INSERT INTO from_the_future VALUES ('keep me');");
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();

    expectRefused(new RegExp(`schema version ${SCHEMA_VERSION + 1}`));
    expect(inspect(path, (d) => d.pragma("user_version", { simple: true }))).toBe(SCHEMA_VERSION + 1);
    expect(inspect(path, (d) => d.prepare("SELECT x FROM from_the_future").pluck().get())).toBe("keep me");
  });

  it("refuses a newer schema written in WAL mode without modifying it", () => {
    const db = new Database(path);
    db.pragma("journal_mode = WAL");
    for (const sql of MIGRATIONS) db.exec(sql);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();

    expectRefused(/newer/);
  });

  it("refuses a file that is not an SQLite database, naming it, without modifying it", () => {
    writeFileSync(path, "this is not a database\n".repeat(400));
    expectRefused(/not a usable task database/);
  });

  it("refuses a truncated SQLite header without modifying the file", () => {
    open().close();
    writeFileSync(path, readFileSync(path).subarray(0, 50));
    expectRefused(/not a usable task database/);
  });

  // Damaged task pages must be found at open (PRAGMA quick_check), not by a later query with a bare SqliteError.
  it("refuses a database whose task pages are damaged, naming the file, without modifying it", () => {
    const store = open();
    for (let i = 0; i < 2_000; i++) {
      store.put(createTask(`t${i}`, { ...base, owner: "local", parent_session_id: null, prompt: "p".repeat(200) }, i));
    }
    store.close();
    const bytes = readFileSync(path);
    bytes.fill(0x41, 4096 * 2, 4096 * 4);
    writeFileSync(path, bytes);

    expectRefused(/not a usable task database|malformed|corrupt/);
  });
});
