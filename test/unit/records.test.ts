import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TaskRecords, type TaskChange } from "../../src/tasks/records.js";
import { SqliteTaskStore } from "../../src/tasks/sqlite-store.js";
import type { OutboxMessage, OutboxRow } from "../../src/tasks/store.js";
import { createTask, isTerminal, type Task, type TerminalStatus } from "../../src/tasks/task.js";

const newTask = (id: string, parent: string | null = null): Task =>
  createTask(
    id,
    { owner: "local", description: `task ${id}`, prompt: "look for it", agent: "explore", model: null, parent_session_id: parent, timeout_ms: null },
    Date.now(),
  );

const outboxOf = (task: Task): OutboxMessage | undefined =>
  task.parent_session_id ? { taskId: task.id, kind: "parent_prompt", target: task.parent_session_id, body: `Task ${task.id} ${task.status}` } : undefined;

/** A few event-loop turns, so that racing callers interleave. */
const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

let store: SqliteTaskStore;
let records: TaskRecords;
let changes: TaskChange[];

beforeEach(() => {
  store = new SqliteTaskStore(":memory:");
  records = new TaskRecords(store, { outboxFor: outboxOf, maxResultChars: 1_000 });
  changes = [];
  records.on("change", (change) => changes.push(change));
});

afterEach(() => {
  store.close();
});

/** A running task with a session, as the session runner leaves it. */
function running(id: string, parent: string | null = null): Task {
  records.add(newTask(id, parent));
  expect(records.markRunning(id)).toBe(true);
  records.markSession(id, `ses_${id}`, false);
  records.markPrompted(id);
  return records.get(id)!;
}

describe("TaskRecords: exactly one terminal state", () => {
  it("lets one of several racing finishes win: one terminal change, and the store agrees", async () => {
    running("t1", "ses_parent");
    const attempts: Array<{ status: TerminalStatus; fields: { result?: string; error?: string } }> = [
      { status: "completed", fields: { result: "the answer" } },
      { status: "error", fields: { error: "provider failed" } },
      { status: "cancelled", fields: { error: "cancelled by request" } },
      { status: "error", fields: { error: "timed out" } },
      { status: "completed", fields: { result: "a late answer" } },
      { status: "cancelled", fields: { error: "session was deleted" } },
    ];
    const won = await Promise.all(
      attempts.map(async ({ status, fields }, i) => {
        await turns(i % 3);
        return records.finish("t1", status, fields);
      }),
    );

    expect(won.filter(Boolean)).toHaveLength(1);
    const winner = attempts[won.indexOf(true)]!;
    const terminal = changes.filter((c) => isTerminal(c.task.status));
    expect(terminal).toHaveLength(1);
    expect(terminal[0]!.event).toBe(`task.${winner.status}`);
    const stored = store.get("t1")!;
    expect(stored.status).toBe(winner.status);
    expect(stored.result ?? stored.error).toBe(winner.fields.result ?? winner.fields.error);
    expect(records.get("t1")).toEqual(stored);
    // The one terminal state carried its one outbox message.
    expect(store.outboxFor("t1")).toHaveLength(1);
  });

  it("changes nothing after the end: no progress, no session, no second finish", () => {
    running("t1");
    expect(records.finish("t1", "completed", { result: "done" })).toBe(true);
    const ended = store.get("t1");
    const announced = changes.length;

    records.progress("t1", { tool_calls: 9, last_tool: "bash", last_message: "late" });
    records.markSession("t1", "ses_other", false);
    records.markPrompted("t1");
    expect(records.markRunning("t1")).toBe(false);
    expect(records.finish("t1", "error", { error: "late error" })).toBe(false);

    expect(changes).toHaveLength(announced);
    expect(store.get("t1")).toEqual(ended);
  });

  it("does not start a task that ended while it waited for a slot", () => {
    records.add(newTask("t1"));
    expect(records.finish("t1", "cancelled", { error: "cancelled before it started" })).toBe(true);
    expect(records.markRunning("t1")).toBe(false);
    expect(store.get("t1")!.status).toBe("cancelled");
  });

  it("clips a long result to maxResultChars, keeping its head and tail", () => {
    running("t1");
    const result = `HEAD${"x".repeat(5_000)}TAIL`;
    records.finish("t1", "completed", { result });
    const stored = store.get("t1")!.result!;
    expect(stored.length).toBeLessThanOrEqual(1_000);
    expect(stored.startsWith("HEAD")).toBe(true);
    expect(stored.endsWith("TAIL")).toBe(true);
  });
});

describe("TaskRecords: waiters", () => {
  it("wakes every waiter when the task ends, with the terminal task", async () => {
    running("t1");
    const waiting = [records.waitForTerminal("t1", 5_000), records.waitForTerminal("t1", 5_000)];
    await turns(2);
    records.finish("t1", "completed", { result: "done" });
    const woken = await Promise.all(waiting);
    expect(woken.map((t) => t?.status)).toEqual(["completed", "completed"]);
    expect(woken[0]!.result).toBe("done");
  });

  it("gives up after the timeout with the task as it stands", async () => {
    running("t1");
    const started = Date.now();
    const task = await records.waitForTerminal("t1", 30);
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
    expect(task?.status).toBe("running");
  });

  it("gives up when the signal aborts, long before the timeout", async () => {
    running("t1");
    const abort = new AbortController();
    const waiting = records.waitForTerminal("t1", 60_000, abort.signal);
    await turns(2);
    abort.abort();
    expect((await waiting)?.status).toBe("running");
  });

  it("answers at once for a terminal or unknown task", async () => {
    running("t1");
    records.finish("t1", "error", { error: "boom" });
    expect((await records.waitForTerminal("t1", 60_000))?.status).toBe("error");
    expect(await records.waitForTerminal("nope", 60_000)).toBeUndefined();
  });
});

describe("TaskRecords: store first, then announce", () => {
  it("every change is in the store when it is announced, and a terminal one with its outbox message", () => {
    const seen: Array<{ event: TaskChange["event"]; stored: Task | undefined; outbox: OutboxRow[] }> = [];
    records.on("change", ({ event, task }) => seen.push({ event, stored: store.get(task.id), outbox: store.outboxFor(task.id) }));

    running("t1", "ses_parent");
    records.progress("t1", { tool_calls: 1, last_tool: "read", last_message: null });
    records.progress("t1", { tool_calls: 1, last_tool: "read", last_message: null, retry: { attempt: 1, message: "overloaded", next_at: "x" } }, true);
    records.finish("t1", "completed", { result: "done" });

    expect(seen.map((s) => s.event)).toEqual([
      "task.queued",
      "task.running",
      "task.session",
      "task.session",
      "task.progress",
      "task.retrying",
      "task.completed",
    ]);
    expect(seen.map((s) => s.stored)).toEqual(changes.map((c) => c.task));
    expect(seen.slice(0, -1).every((s) => s.outbox.length === 0)).toBe(true);
    expect(seen.at(-1)!.outbox).toMatchObject([{ taskId: "t1", kind: "parent_prompt", target: "ses_parent", body: "Task t1 completed" }]);
  });

  it("keeps unfinished tasks across a reopen: a new TaskRecords over the same store has them, in queue order", () => {
    records.add(newTask("a"));
    running("b");
    records.add(newTask("c"));
    running("d");
    records.finish("d", "completed", { result: "done" });
    const reopened = new TaskRecords(store);
    expect(reopened.unfinished().map((t) => [t.id, t.status])).toEqual([
      ["a", "queued"],
      ["b", "running"],
      ["c", "queued"],
    ]);
    expect(reopened.get("d")?.status).toBe("completed");
  });
});
