import { describe, expect, it } from "vitest";
import {
  TASK_STATUSES,
  canTransition,
  createTask,
  durationMs,
  isTerminal,
  transition,
  type Task,
  type TaskStatus,
} from "../../src/tasks/task.js";

const input = {
  owner: "local",
  description: "find the bug",
  prompt: "look for it",
  agent: "explore",
  model: null,
  parent_session_id: null,
  timeout_ms: null,
};

function taskIn(status: TaskStatus): Task {
  const queued = createTask("t1", input, 1_000);
  if (status === "queued") return queued;
  const running = transition(queued, "running", 2_000)!;
  if (status === "running") return running;
  return transition(running, status, 3_000, { result: "r", error: "e" })!;
}

describe("createTask", () => {
  it("starts queued with empty progress and no timestamps beyond created_at", () => {
    const task = createTask("t1", input, 1_234);
    expect(task.status).toBe("queued");
    expect(task.id).toBe("t1");
    expect(task.agent).toBe("explore");
    expect(task.created_at).toBe(1_234);
    expect(task.started_at).toBeNull();
    expect(task.completed_at).toBeNull();
    expect(task.prompted_at).toBeNull();
    expect(task.session_id).toBeNull();
    expect(task.progress).toEqual({ tool_calls: 0, last_tool: null, last_message: null });
    expect(task.result).toBeNull();
    expect(task.error).toBeNull();
  });
});

describe("canTransition", () => {
  const allowed: Array<[TaskStatus, TaskStatus]> = [
    ["queued", "running"],
    ["queued", "cancelled"],
    ["queued", "error"],
    ["running", "completed"],
    ["running", "error"],
    ["running", "cancelled"],
  ];

  it.each(allowed)("allows %s -> %s", (from, to) => {
    expect(canTransition(from, to)).toBe(true);
  });

  const forbidden: Array<[TaskStatus, TaskStatus]> = [];
  for (const from of TASK_STATUSES) {
    for (const to of TASK_STATUSES) {
      if (!allowed.some(([f, t]) => f === from && t === to)) forbidden.push([from, to]);
    }
  }

  it("forbids every other pair, including self-transitions and queued -> completed", () => {
    expect(forbidden).toContainEqual(["queued", "completed"]);
    expect(forbidden).toContainEqual(["running", "running"]);
    expect(forbidden).toContainEqual(["running", "queued"]);
    expect(forbidden).toContainEqual(["completed", "running"]);
  });

  it.each(forbidden)("forbids %s -> %s", (from, to) => {
    expect(canTransition(from, to)).toBe(false);
  });
});

describe("isTerminal", () => {
  it.each([
    ["queued", false],
    ["running", false],
    ["completed", true],
    ["error", true],
    ["cancelled", true],
  ] as Array<[TaskStatus, boolean]>)("%s -> %s", (status, terminal) => {
    expect(isTerminal(status)).toBe(terminal);
  });
});

describe("transition", () => {
  it("sets started_at when the task starts running, leaving completed_at null", () => {
    const queued = createTask("t1", input, 1_000);
    const running = transition(queued, "running", 2_500);
    expect(running).not.toBeNull();
    expect(running!.status).toBe("running");
    expect(running!.started_at).toBe(2_500);
    expect(running!.completed_at).toBeNull();
    expect(running!.created_at).toBe(1_000);
  });

  it("does not mutate the task it was given", () => {
    const queued = createTask("t1", input, 1_000);
    const snapshot = structuredClone(queued);
    transition(queued, "running", 2_000);
    expect(queued).toEqual(snapshot);
  });

  it("sets completed_at on a terminal state and keeps started_at", () => {
    const running = transition(createTask("t1", input, 1_000), "running", 2_000)!;
    const done = transition(running, "completed", 5_000, { result: "the answer" })!;
    expect(done.status).toBe("completed");
    expect(done.started_at).toBe(2_000);
    expect(done.completed_at).toBe(5_000);
    expect(done.result).toBe("the answer");
    expect(done.error).toBeNull();
  });

  it("records the error of a failed task", () => {
    const running = transition(createTask("t1", input, 1_000), "running", 2_000)!;
    const failed = transition(running, "error", 3_000, { error: "boom" })!;
    expect(failed.status).toBe("error");
    expect(failed.error).toBe("boom");
    expect(failed.completed_at).toBe(3_000);
  });

  it("lets a queued task be cancelled without ever starting", () => {
    const cancelled = transition(createTask("t1", input, 1_000), "cancelled", 4_000, { error: "by user" })!;
    expect(cancelled.status).toBe("cancelled");
    expect(cancelled.started_at).toBeNull();
    expect(cancelled.completed_at).toBe(4_000);
  });

  it("refuses a forbidden move (queued -> completed)", () => {
    expect(transition(createTask("t1", input, 1_000), "completed", 2_000, { result: "x" })).toBeNull();
  });

  it.each(["completed", "error", "cancelled"] as const)("a %s task is final: every move is refused", (status) => {
    const terminal = taskIn(status);
    expect(terminal.status).toBe(status);
    for (const to of TASK_STATUSES) {
      expect(transition(terminal, to, 9_000, { result: "late", error: "late" })).toBeNull();
    }
  });

  it("a duplicate terminal event is a no-op (second completed refused)", () => {
    const running = transition(createTask("t1", input, 1_000), "running", 2_000)!;
    const done = transition(running, "completed", 3_000, { result: "first" })!;
    expect(transition(done, "completed", 4_000, { result: "second" })).toBeNull();
    expect(done.result).toBe("first");
    expect(done.completed_at).toBe(3_000);
  });
});

describe("durationMs", () => {
  it("is null while the task has not started", () => {
    expect(durationMs(createTask("t1", input, 1_000), 50_000)).toBeNull();
  });

  it("counts from started_at to now while running", () => {
    const running = transition(createTask("t1", input, 1_000), "running", 2_000)!;
    expect(durationMs(running, 2_750)).toBe(750);
    expect(durationMs(running, 10_000)).toBe(8_000);
  });

  it("counts from started_at to completed_at once terminal, whatever now is", () => {
    const running = transition(createTask("t1", input, 1_000), "running", 2_000)!;
    const done = transition(running, "completed", 5_500, { result: "ok" })!;
    expect(durationMs(done, 100_000)).toBe(3_500);
  });

  it("is null for a task cancelled while queued", () => {
    const cancelled = transition(createTask("t1", input, 1_000), "cancelled", 3_000)!;
    expect(durationMs(cancelled, 10_000)).toBeNull();
  });
});
