import Database from "better-sqlite3";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SqliteTaskStore } from "../../src/tasks/sqlite-store.js";
import type { OutboxMessage } from "../../src/tasks/store.js";
import { createTask, transition, type NewTask, type Task, type TerminalStatus } from "../../src/tasks/task.js";

const input: NewTask = {
  owner: "local",
  description: "find the bug",
  prompt: "look for it",
  agent: "explore",
  model: null,
  parent_session_id: null,
  timeout_ms: null,
};

const queued = (id: string, created: number, extra: Partial<NewTask> = {}): Task => createTask(id, { ...input, ...extra }, created);
const running = (task: Task, at = task.created_at + 1): Task => ({ ...transition(task, "running", at)!, session_id: `ses_${task.id}` });
const finished = (task: Task, at: number, status: TerminalStatus = "completed"): Task =>
  transition(task.status === "queued" && status === "completed" ? running(task) : task, status, at, {
    result: status === "completed" ? `result of ${task.id}` : null,
    error: status === "completed" ? null : `why ${task.id} ended`,
  })!;
const message = (task: Task, body = `Task ${task.id} ended`): OutboxMessage => ({
  taskId: task.id,
  kind: "parent_prompt",
  target: task.parent_session_id ?? "ses_parent",
  body,
});
const ids = (tasks: Task[]): string[] => tasks.map((t) => t.id);

/** Every field set, nested progress included, and strings that JSON has to escape. */
const fullTask: Task = {
  id: "task_full",
  owner: "alice",
  description: 'refactor the "parser" — ünïcode, emoji 🚀, and a\nnewline',
  prompt: "line one\nline two\t\\ backslash",
  agent: "build",
  model: { providerID: "anthropic", modelID: "claude-sonnet-4" },
  parent_session_id: "ses_parent",
  depth: 2,
  timeout_ms: 600_000,
  status: "running",
  session_id: "ses_child",
  created_at: 1_760_000_000_000,
  started_at: 1_760_000_000_500,
  completed_at: null,
  prompted_at: 1_760_000_000_600,
  embedded: true,
  progress: {
    tool_calls: 7,
    last_tool: "grep",
    last_message: "looking at parser.ts",
    incomplete_todos: [
      { content: "write tests", status: "pending" },
      { content: "fix parser", status: "in_progress" },
    ],
    retry: { attempt: 2, message: "Provider is overloaded", next_at: "2025-10-09T08:53:22.000Z" },
    permission: { request_id: "per_1", permission: "bash", patterns: ["rm *"], decision: "rejected" },
    todo_continuations: 1,
    stalled_since: null,
  },
  result: null,
  error: null,
};

let dir: string;
let store: SqliteTaskStore;
let path: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "bam-store-"));
  path = join(dir, "tasks.db");
  store = new SqliteTaskStore(path);
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("SqliteTaskStore round-trips", () => {
  it("returns a stored task exactly as it was put, every field included", () => {
    store.put(fullTask);
    expect(store.get(fullTask.id)).toEqual(fullTask);
  });

  it("round-trips the nullable fields as null, not undefined or missing", () => {
    const task = queued("task_min", 1_000);
    store.put(task);
    const back = store.get("task_min")!;
    expect(back).toEqual(task);
    for (const field of ["model", "parent_session_id", "timeout_ms", "session_id", "started_at", "completed_at", "prompted_at", "result", "error"] as const) {
      expect(back[field], field).toBeNull();
    }
  });

  it("round-trips terminal tasks with their result and error", () => {
    const done = finished(queued("t_ok", 1_000), 5_000, "completed");
    const failed = finished(running(queued("t_err", 1_001)), 5_001, "error");
    const cancelled = finished(queued("t_cancel", 1_002), 5_002, "cancelled");
    for (const task of [done, failed, cancelled]) store.put(task);
    expect(store.get("t_ok")).toEqual(done);
    expect(store.get("t_ok")!.result).toBe("result of t_ok");
    expect(store.get("t_err")).toEqual(failed);
    expect(store.get("t_err")!.error).toBe("why t_err ended");
    expect(store.get("t_cancel")).toEqual(cancelled);
  });

  it("returns undefined for an unknown id", () => {
    expect(store.get("nope")).toBeUndefined();
  });

  it("updates a task in place: one row, the latest state, its creation position kept", () => {
    const a = queued("a", 1_000);
    const b = queued("b", 2_000);
    const c = queued("c", 3_000);
    for (const task of [a, b, c]) store.put(task);

    const aRunning = { ...running(a, 4_000), progress: { tool_calls: 2, last_tool: "read", last_message: "hi" } };
    store.put(aRunning);
    const aDone = finished(aRunning, 5_000);
    store.put(aDone);

    expect(store.count()).toBe(3);
    expect(store.get("a")).toEqual(aDone);
    expect(ids(store.list())).toEqual(["c", "b", "a"]);
  });

  it("lists newest first, with limit, offset and owner", () => {
    const owners = ["alice", "bob", "alice", "local", "alice", "bob"];
    owners.forEach((owner, i) => store.put(queued(`t${i}`, 1_000 + i, { owner })));

    expect(ids(store.list())).toEqual(["t5", "t4", "t3", "t2", "t1", "t0"]);
    expect(ids(store.list({ limit: 2 }))).toEqual(["t5", "t4"]);
    expect(ids(store.list({ limit: 2, offset: 2 }))).toEqual(["t3", "t2"]);
    expect(ids(store.list({ offset: 4 }))).toEqual(["t1", "t0"]);
    expect(ids(store.list({ limit: Infinity }))).toHaveLength(6);
    expect(store.list({ limit: 0 })).toEqual([]);
    expect(store.list({ offset: 10 })).toEqual([]);

    expect(ids(store.list({ owner: "alice" }))).toEqual(["t4", "t2", "t0"]);
    expect(ids(store.list({ owner: "alice", limit: 1, offset: 1 }))).toEqual(["t2"]);
    expect(ids(store.list({ owner: "bob" }))).toEqual(["t5", "t1"]);
    expect(ids(store.list({ owner: "nobody" }))).toEqual([]);
    expect(store.list({ owner: "alice" }).every((t) => t.owner === "alice")).toBe(true);
  });

  it("unfinished() returns only queued and running tasks, in creation order", () => {
    const tasks = ["a", "b", "c", "d", "e"].map((id, i) => queued(id, 1_000 + i));
    for (const task of tasks) store.put(task);
    const [a, b, c, d] = tasks as [Task, Task, Task, Task, Task];
    store.put(running(c)); // started later than b and d, still in its creation position
    store.put(finished(b, 9_000));
    store.put(finished(running(d), 9_001, "error"));
    store.put(running(a));

    expect(ids(store.unfinished())).toEqual(["a", "c", "e"]);
    expect(store.unfinished().map((t) => t.status)).toEqual(["running", "running", "queued"]);
  });

  it("counts every task, finished or not", () => {
    expect(store.count()).toBe(0);
    store.put(queued("a", 1));
    store.put(finished(queued("b", 2), 3));
    store.put(queued("a", 1)); // same id: an update, not a new row
    expect(store.count()).toBe(2);
  });

  it("commits a put before it returns: another connection sees it at once", () => {
    store.put(fullTask);
    const reader = new Database(path, { readonly: true });
    try {
      const row = reader.prepare("SELECT status, owner FROM tasks WHERE id = ?").get(fullTask.id);
      expect(row).toEqual({ status: "running", owner: "alice" });
    } finally {
      reader.close();
    }
  });
});

describe("SqliteTaskStore outbox", () => {
  it("writes a terminal state and its outbox message together", () => {
    const before = Date.now();
    const task = { ...queued("t1", 1_000), parent_session_id: "ses_parent" };
    store.put(task);
    expect(store.outboxFor("t1")).toEqual([]);

    const done = finished(task, 5_000);
    store.put(done, message(done, "Task t1 completed"));
    expect(store.get("t1")).toEqual(done);
    const rows = store.outboxFor("t1");
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      taskId: "t1",
      kind: "parent_prompt",
      target: "ses_parent",
      body: "Task t1 completed",
      attempts: 0,
      deliveredAt: null,
      lastError: null,
    });
    expect(rows[0]!.nextAttemptAt).toBeGreaterThanOrEqual(before);
    expect(rows[0]!.nextAttemptAt).toBeLessThanOrEqual(Date.now());
    expect(store.dueOutbox(Date.now())).toEqual(rows);
  });

  it("ignores a second message of the same kind for the same task, delivered or not", () => {
    const done = finished(queued("t1", 1_000), 5_000);
    store.put(done, message(done, "first"));
    store.put(done, message(done, "second"));
    expect(store.outboxFor("t1").map((r) => r.body)).toEqual(["first"]);

    const [row] = store.outboxFor("t1");
    store.markDelivered(row!.id, 6_000);
    store.put(done, message(done, "third"));
    expect(store.outboxFor("t1")).toEqual([{ ...row!, deliveredAt: 6_000 }]);
    expect(store.dueOutbox(Number.MAX_SAFE_INTEGER)).toEqual([]);
  });

  it("writes neither the task nor the message when the message cannot be written", () => {
    const task = queued("t1", 1_000);
    store.put(task);
    const done = finished(task, 5_000);
    const broken = { ...message(done), target: null } as unknown as OutboxMessage; // violates NOT NULL
    expect(() => store.put(done, broken)).toThrow();
    expect(store.get("t1")).toEqual(task);
    expect(store.outboxFor("t1")).toEqual([]);
  });

  it("returns due messages oldest first and tracks attempts, failures and delivery", () => {
    const tasks = ["a", "b", "c"].map((id, i) => finished(queued(id, 1_000 + i), 5_000 + i));
    for (const task of tasks) store.put(task, message(task));
    const now = Date.now();
    expect(store.dueOutbox(now).map((r) => r.taskId)).toEqual(["a", "b", "c"]);
    expect(store.dueOutbox(0)).toEqual([]);

    const [a, b] = store.dueOutbox(now) as [ReturnType<typeof store.dueOutbox>[number], ReturnType<typeof store.dueOutbox>[number]];
    store.beginAttempt(a.id);
    store.markAttemptFailed(a.id, "x".repeat(5_000), now + 60_000);
    store.beginAttempt(b.id);
    store.markDelivered(b.id, now + 1);

    expect(store.dueOutbox(now).map((r) => r.taskId)).toEqual(["c"]);
    expect(store.dueOutbox(now + 60_000).map((r) => r.taskId)).toEqual(["a", "c"]);
    const [failed] = store.outboxFor("a");
    expect(failed).toMatchObject({ attempts: 1, nextAttemptAt: now + 60_000, deliveredAt: null });
    expect(failed!.lastError).toHaveLength(2_000);

    store.beginAttempt(a.id);
    store.markDelivered(a.id, now + 60_001);
    expect(store.outboxFor("a")[0]).toMatchObject({ attempts: 2, deliveredAt: now + 60_001, lastError: null });
    expect(store.outboxFor("b")[0]).toMatchObject({ attempts: 1, deliveredAt: now + 1 });
    expect(store.dueOutbox(Number.MAX_SAFE_INTEGER).map((r) => r.taskId)).toEqual(["c"]);
  });
});

describe("SqliteTaskStore durability", () => {
  it("keeps everything across close and reopen of the same file", () => {
    const tasks: Task[] = [];
    for (let i = 0; i < 20; i++) {
      const owner = i % 3 === 0 ? "alice" : "local";
      let task: Task = { ...queued(`t${String(i).padStart(2, "0")}`, 1_000 + i, { owner }), parent_session_id: "ses_parent" };
      if (i % 4 === 1) task = running(task);
      if (i % 4 === 2) task = finished(task, 9_000 + i);
      if (i % 4 === 3) task = finished(running(task), 9_000 + i, "error");
      tasks.push(task);
      store.put(task, i % 4 >= 2 ? message(task) : undefined);
    }
    store.put(fullTask);
    const [first] = store.dueOutbox(Date.now());
    store.beginAttempt(first!.id);
    store.markAttemptFailed(first!.id, "parent busy", 123_456);

    const snapshot = {
      list: store.list(),
      unfinished: store.unfinished(),
      alice: store.list({ owner: "alice" }),
      count: store.count(),
      outbox: tasks.flatMap((t) => store.outboxFor(t.id)),
      due: store.dueOutbox(Date.now()),
    };
    store.close();
    store.close(); // closing twice is harmless

    store = new SqliteTaskStore(path);
    expect(store.list()).toEqual(snapshot.list);
    expect(store.unfinished()).toEqual(snapshot.unfinished);
    expect(store.list({ owner: "alice" })).toEqual(snapshot.alice);
    expect(store.count()).toBe(21);
    expect(tasks.flatMap((t) => store.outboxFor(t.id))).toEqual(snapshot.outbox);
    expect(store.dueOutbox(Date.now())).toEqual(snapshot.due);
    expect(store.get(fullTask.id)).toEqual(fullTask);
    for (const task of tasks) expect(store.get(task.id)).toEqual(task);
    expect(store.outboxFor(first!.taskId)[0]).toMatchObject({ attempts: 1, lastError: "parent busy", nextAttemptAt: 123_456 });

    // and it keeps working: a new task goes to the top, new outbox rows get written
    const next = finished(queued("t_new", 99_000), 99_500);
    store.put(next, message(next));
    expect(store.list({ limit: 1 })[0]!.id).toBe("t_new");
    expect(store.outboxFor("t_new")).toHaveLength(1);
  });
});

describe("SqliteTaskStore prune", () => {
  /** Puts tasks in the given order; `finishedAt` null leaves the task queued (odd index) or running. */
  function seed(spec: Array<[id: string, finishedAt: number | null]>): void {
    spec.forEach(([id, finishedAt], i) => {
      const task = queued(id, 1_000 + i);
      if (finishedAt === null) store.put(i % 2 ? task : running(task));
      else store.put(finished(task, finishedAt), message(task));
    });
  }

  it("removes finished tasks older than finishedBefore, never unfinished ones", () => {
    seed([
      ["old1", 100],
      ["q", null],
      ["r", null],
      ["old2", 200],
      ["edge", 250],
      ["new", 300],
    ]);
    expect(store.prune({ finishedBefore: 250, maxTasks: 1_000 })).toBe(2);
    expect(ids(store.list())).toEqual(["new", "edge", "r", "q"]);
    expect(store.prune({ finishedBefore: 250, maxTasks: 1_000 })).toBe(0);
    // unfinished tasks survive any age
    expect(store.prune({ finishedBefore: Number.MAX_SAFE_INTEGER, maxTasks: 1_000 })).toBe(2);
    expect(ids(store.list())).toEqual(["r", "q"]);
    expect(ids(store.unfinished())).toEqual(["q", "r"]);
  });

  it("removes the oldest finished tasks beyond maxTasks, never unfinished ones", () => {
    seed([
      ["f1", 100],
      ["q1", null],
      ["f2", 200],
      ["f3", 300],
      ["r1", null],
      ["f4", 400],
    ]);
    expect(store.prune({ finishedBefore: 0, maxTasks: 4 })).toBe(2);
    expect(ids(store.list())).toEqual(["f4", "r1", "f3", "q1"]);
    expect(store.prune({ finishedBefore: 0, maxTasks: 4 })).toBe(0);

    // more unfinished tasks than maxTasks: every finished one goes, no unfinished one does
    expect(store.prune({ finishedBefore: 0, maxTasks: 1 })).toBe(2);
    expect(ids(store.list())).toEqual(["r1", "q1"]);
    expect(store.count()).toBe(2);
  });

  it("applies both limits in one call", () => {
    seed([
      ["f1", 100],
      ["f2", 200],
      ["f3", 300],
      ["f4", 400],
      ["f5", 500],
    ]);
    expect(store.prune({ finishedBefore: 150, maxTasks: 2 })).toBe(3);
    expect(ids(store.list())).toEqual(["f5", "f4"]);
  });

  it("removes the delivered outbox rows of pruned tasks and keeps undelivered ones due", () => {
    seed([
      ["delivered", 100],
      ["pending", 200],
      ["kept", 300],
    ]);
    const deliveredRow = store.outboxFor("delivered")[0]!;
    const keptRow = store.outboxFor("kept")[0]!;
    store.markDelivered(deliveredRow.id, 1_000);
    store.markDelivered(keptRow.id, 1_000);

    expect(store.prune({ finishedBefore: 250, maxTasks: 1_000 })).toBe(2);
    expect(store.outboxFor("delivered")).toEqual([]);
    // the parent was never told about "pending": its message outlives the task
    expect(store.outboxFor("pending")).toHaveLength(1);
    expect(store.dueOutbox(Date.now()).map((r) => r.taskId)).toEqual(["pending"]);
    // a delivered row of a task that stays is not touched
    expect(store.outboxFor("kept")).toEqual([{ ...keptRow, deliveredAt: 1_000 }]);
  });

  it("survives a reopen: pruned tasks stay gone", () => {
    seed([
      ["f1", 100],
      ["f2", 200],
      ["q", null],
    ]);
    store.prune({ finishedBefore: 150, maxTasks: 1_000 });
    store.close();
    store = new SqliteTaskStore(path);
    expect(ids(store.list())).toEqual(["q", "f2"]);
  });
});
