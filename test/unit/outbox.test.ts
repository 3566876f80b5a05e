import { EventEmitter } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ParentNotifier, parentPromptText } from "../../src/notify/parent-prompt.js";
import { OpencodeRequestError, type OpencodeApi, type PromptInput, type SessionMessage } from "../../src/opencode/client.js";
import { SessionContexts } from "../../src/opencode/session-context.js";
import { textOf } from "../../src/opencode/transcript.js";
import type { TaskChange } from "../../src/tasks/records.js";
import { SqliteTaskStore } from "../../src/tasks/sqlite-store.js";
import type { OutboxMessage, OutboxRow } from "../../src/tasks/store.js";
import { createTask, transition, type Task, type TerminalStatus } from "../../src/tasks/task.js";
import { assistantMessage, textPart, userMessage } from "./opencode-fixtures.js";

const PARENT = "ses_parent";
/** ParentNotifier's give-up marker: a row that is never due again. */
const NEVER = Number.MAX_SAFE_INTEGER;

/**
 * The parent side of opencode: sessions with messages. `prompt` appends a user message carrying the text
 * (as opencode does once it accepts a prompt), so the notifier can find it on a retry. Every user message
 * is announced on the event stream (`message.updated`) to `contexts`, as the server's watcher would pass
 * it on. Failures are queued per call; `hold` makes prompts wait until released, to keep a delivery in flight.
 */
class FakeParent {
  /** What the server learnt from the event stream. */
  readonly contexts = new SessionContexts();
  readonly sessions = new Map<string, SessionMessage[]>();
  readonly prompts: Array<{ target: string; input: PromptInput }> = [];
  readonly promptAttempts: string[] = [];
  readonly messageReads: string[] = [];
  readonly failPrompt: Error[] = [];
  readonly failMessages: Error[] = [];
  #hold: Promise<void> | undefined;
  #held: string | undefined;
  #release: (() => void) | undefined;

  readonly api = {
    messages: async (target: string, limit?: number): Promise<SessionMessage[]> => {
      this.messageReads.push(target);
      await Promise.resolve();
      const failure = this.failMessages.shift();
      if (failure) throw failure;
      const all = this.sessions.get(target) ?? [];
      return limit === undefined ? [...all] : all.slice(-limit);
    },
    prompt: async (target: string, input: PromptInput): Promise<void> => {
      this.promptAttempts.push(target);
      await Promise.resolve();
      if (this.#hold && (this.#held === undefined || this.#held === target)) await this.#hold;
      const failure = this.failPrompt.shift();
      if (failure) throw failure;
      this.prompts.push({ target, input });
      this.say(target, input.text, input.agent, input.model);
    },
  } as unknown as OpencodeApi;

  /** Adds a user message to a session. */
  say(target: string, text: string, agent?: string, model?: { providerID: string; modelID: string }): void {
    const info = { ...userMessage(target), ...(agent ? { agent } : {}), ...(model ? { model } : {}) };
    const messages = this.sessions.get(target) ?? [];
    messages.push({ info, parts: [textPart(target, info.id, text)] });
    this.sessions.set(target, messages);
    this.contexts.onEvent({ id: `evt_${info.id}`, type: "message.updated", properties: { sessionID: target, info } });
  }

  answer(target: string, text: string): void {
    const info = assistantMessage(target);
    const messages = this.sessions.get(target) ?? [];
    messages.push({ info, parts: [textPart(target, info.id, text)] });
    this.sessions.set(target, messages);
  }

  /** Holds prompts into `target` (default: every session) until released. */
  hold(target?: string): void {
    this.#held = target;
    this.#hold = new Promise((resolve) => (this.#release = resolve));
  }

  release(): void {
    this.#hold = undefined;
    this.#release?.();
  }

  /** How many user messages in the session announce this task. */
  announcements(taskId: string, target = PARENT): number {
    return (this.sessions.get(target) ?? []).filter((m) => m.info.role === "user" && textOf(m).includes(`Task ${taskId} `)).length;
  }
}

let dir: string;
let path: string;
let store: SqliteTaskStore;
let parent: FakeParent;
let manager: EventEmitter;
const notifiers: ParentNotifier[] = [];

/** A notifier; pass `new SessionContexts()` for one that has seen no event yet (as right after a restart). */
function notifier(on: SqliteTaskStore = store, contexts = parent.contexts): ParentNotifier {
  const n = new ParentNotifier(parent.api, on, manager, contexts);
  notifiers.push(n);
  return n;
}

let counter = 0;
/** A task with a parent that ended; stored with its outbox message, as the task manager does. */
function finish(status: TerminalStatus = "completed", parentSession: string | null = PARENT): Task {
  const queued = createTask(`task_${++counter}`, {
    owner: "local",
    description: "look around",
    prompt: "go",
    agent: "explore",
    model: null,
    parent_session_id: parentSession,
    timeout_ms: null,
  }, Date.now() - 5_000);
  const running = transition(queued, "running", Date.now() - 4_000)!;
  const ended = transition(running, status, Date.now(), status === "completed" ? { result: "found it" } : { error: "it broke" })!;
  store.put(ended, messageFor(ended));
  return ended;
}

/** The outbox message the task manager would store with the terminal state (from a notifier that delivers nothing). */
function messageFor(task: Task): OutboxMessage | undefined {
  const writer = new ParentNotifier(parent.api, store, new EventEmitter(), new SessionContexts());
  writer.close();
  return writer.outboxFor(task);
}

const rowOf = (task: Task): OutboxRow => {
  const rows = store.outboxFor(task.id);
  expect(rows).toHaveLength(1);
  return rows[0]!;
};

const changed = (task: Task): TaskChange => ({ event: `task.${task.status}`, task });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "bam-outbox-"));
  path = join(dir, "tasks.db");
  store = new SqliteTaskStore(path);
  parent = new FakeParent();
  manager = new EventEmitter();
  // the notifier logs each failed attempt as a warning; keep the test output readable
  vi.spyOn(process.stderr, "write").mockImplementation(() => true);
});

afterEach(() => {
  for (const n of notifiers.splice(0)) n.close();
  vi.useRealTimers();
  vi.restoreAllMocks();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the outbox message", () => {
  it("exists only for tasks with a parent session", () => {
    expect(messageFor({ ...finish(), parent_session_id: null })).toBeUndefined();
    expect(store.outboxFor(finish("completed", null).id)).toEqual([]);
  });

  it.each(["completed", "error", "cancelled"] as const)("for a %s task names the task the way a retry looks for it", (status) => {
    const task = finish(status);
    const message = messageFor(task)!;
    expect(message).toEqual({ taskId: task.id, kind: "parent_prompt", target: PARENT, body: parentPromptText(task) });
    expect(message.body).toContain(`Task ${task.id} `);
    expect(message.body).toContain(status.toUpperCase());
  });
});

describe("ParentNotifier delivers each message exactly once", () => {
  it("sends the stored message to the parent and marks it delivered", async () => {
    const task = finish();
    await notifier().flush();

    expect(parent.prompts).toHaveLength(1);
    expect(parent.prompts[0]!.target).toBe(PARENT);
    expect(parent.prompts[0]!.input.text).toBe(rowOf(task).body);
    expect(parent.prompts[0]!.input.noReply).toBeFalsy(); // a wake-up: the parent's model takes a turn
    expect(rowOf(task)).toMatchObject({ attempts: 1, lastError: null });
    expect(rowOf(task).deliveredAt).toEqual(expect.any(Number));
    expect(store.dueOutbox(NEVER)).toEqual([]);

    await notifier().flush();
    expect(parent.prompts).toHaveLength(1);
  });

  it("sends once when flush() is called many times concurrently", async () => {
    const tasks = [finish(), finish("error"), finish("cancelled")];
    const n = notifier();
    parent.hold();
    const flushes = Array.from({ length: 10 }, () => n.flush());
    await Promise.resolve();
    parent.release();
    await Promise.all(flushes);
    await Promise.all(Array.from({ length: 10 }, () => n.flush()));

    expect(parent.promptAttempts).toHaveLength(3);
    for (const task of tasks) {
      expect(parent.announcements(task.id)).toBe(1);
      expect(rowOf(task).deliveredAt).not.toBeNull();
    }
    // in outbox order
    expect(parent.prompts.map((p) => p.input.text)).toEqual(tasks.map((t) => rowOf(t).body));
  });

  it("sends once when the change event fires twice", async () => {
    const n = notifier();
    const task = finish();
    parent.hold();
    manager.emit("change", changed(task));
    manager.emit("change", changed(task));
    parent.release();
    await n.flush();
    manager.emit("change", changed(task));
    await n.flush();

    expect(parent.promptAttempts).toEqual([PARENT]);
    expect(parent.announcements(task.id)).toBe(1);
  });

  it("delivers a message written while a round is in flight in the same flush", async () => {
    const n = notifier();
    const first = finish();
    parent.hold();
    const round = n.flush();
    await Promise.resolve();
    const second = finish();
    manager.emit("change", changed(second)); // joins the running round
    parent.release();
    await round;

    expect(parent.announcements(first.id)).toBe(1);
    expect(parent.announcements(second.id)).toBe(1);
    expect(store.dueOutbox(NEVER)).toEqual([]);
  });

  it("is woken by terminal changes of tasks with a parent only", async () => {
    const n = notifier();
    const task = finish();
    manager.emit("change", { event: "task.running", task: { ...task, status: "running" } } satisfies TaskChange);
    manager.emit("change", changed({ ...task, parent_session_id: null }));
    await Promise.resolve();
    await Promise.resolve();
    expect(parent.messageReads).toEqual([]);
    expect(parent.promptAttempts).toEqual([]);

    manager.emit("change", changed(task));
    await n.flush();
    expect(parent.announcements(task.id)).toBe(1);
  });

  it("stops listening when closed", async () => {
    const n = notifier();
    n.close();
    const task = finish();
    manager.emit("change", changed(task));
    await new Promise((resolve) => setImmediate(resolve));
    expect(parent.messageReads).toEqual([]);
    expect(parent.promptAttempts).toEqual([]);
    expect(rowOf(task).deliveredAt).toBeNull();
  });

  it("carries the parent's latest user agent and model", async () => {
    parent.say(PARENT, "first question", "build", { providerID: "anthropic", modelID: "old-model" });
    parent.answer(PARENT, "an answer");
    parent.say(PARENT, "launch a background task", "plan", { providerID: "openai", modelID: "new-model" });
    parent.answer(PARENT, "launched");
    const task = finish();
    await notifier().flush();

    expect(parent.prompts).toHaveLength(1);
    expect(parent.prompts[0]!.input).toMatchObject({
      text: rowOf(task).body,
      agent: "plan",
      model: { providerID: "openai", modelID: "new-model" },
    });
  });

  it("does not keep one parent waiting for another parent's delivery", async () => {
    const OTHER = "ses_other_parent";
    const n = notifier();
    const first = finish();
    parent.hold(PARENT);
    const round = n.flush();
    const second = finish("completed", OTHER);
    manager.emit("change", changed(second));
    await vi.waitFor(() => expect(parent.announcements(second.id, OTHER)).toBe(1));
    expect(parent.announcements(first.id)).toBe(0); // still in flight

    parent.release();
    await round;
    expect(parent.announcements(first.id)).toBe(1);
    expect(parent.promptAttempts).toEqual([PARENT, OTHER]);
  });
});

describe("ParentNotifier prompt context", () => {
  it("makes one request, the prompt, when the event stream told the parent's agent and model", async () => {
    parent.say(PARENT, "launch a background task", "plan", { providerID: "openai", modelID: "new-model" });
    parent.answer(PARENT, "launched");
    const task = finish();
    await notifier().flush();

    expect(parent.messageReads).toEqual([]);
    expect(parent.promptAttempts).toEqual([PARENT]);
    expect(parent.prompts[0]!.input).toMatchObject({ text: rowOf(task).body, agent: "plan", model: { providerID: "openai", modelID: "new-model" } });
    expect(rowOf(task).deliveredAt).not.toBeNull();
  });

  it("reads the parent's messages for its agent and model when the stream has not told them", async () => {
    parent.say(PARENT, "first question", "build", { providerID: "anthropic", modelID: "old-model" });
    parent.say(PARENT, "launch a background task", "plan", { providerID: "openai", modelID: "new-model" });
    parent.answer(PARENT, "launched");
    const task = finish();
    await notifier(store, new SessionContexts()).flush(); // e.g. started after those messages

    expect(parent.messageReads).toEqual([PARENT]);
    expect(parent.prompts).toHaveLength(1);
    expect(parent.prompts[0]!.input).toMatchObject({ text: rowOf(task).body, agent: "plan", model: { providerID: "openai", modelID: "new-model" } });
  });

  it("leaves agent and model out when the parent has no user message yet", async () => {
    parent.answer(PARENT, "only an assistant message");
    finish();
    await notifier().flush();
    expect(parent.messageReads).toEqual([PARENT]);
    expect(parent.prompts).toHaveLength(1);
    expect(parent.prompts[0]!.input.agent).toBeUndefined();
    expect(parent.prompts[0]!.input.model).toBeUndefined();
  });
});

describe("ParentNotifier retries", () => {
  const T = 1_760_000_000_000;

  it("retries a failed send later, with backoff, and delivers it once", async () => {
    vi.useFakeTimers({ now: T });
    const task = finish();
    parent.failPrompt.push(new Error("parent is busy"), new Error("opencode is down"));
    const n = notifier();

    await n.flush();
    expect(rowOf(task)).toMatchObject({ attempts: 1, deliveredAt: null, nextAttemptAt: T + 1_000 });
    expect(rowOf(task).lastError).toContain("parent is busy");
    expect(store.dueOutbox(T + 999)).toEqual([]);
    expect(store.dueOutbox(T + 1_000)).toHaveLength(1);

    // the notifier wakes itself for the retry
    await vi.advanceTimersByTimeAsync(1_000);
    await n.flush();
    expect(rowOf(task)).toMatchObject({ attempts: 2, deliveredAt: null, nextAttemptAt: T + 1_000 + 2_000 });
    expect(rowOf(task).lastError).toContain("opencode is down");

    await vi.advanceTimersByTimeAsync(2_000);
    await n.flush();
    expect(rowOf(task)).toMatchObject({ attempts: 3, deliveredAt: T + 3_000, lastError: null });
    expect(parent.promptAttempts).toHaveLength(3);
    expect(parent.prompts).toHaveLength(1);
    expect(parent.announcements(task.id)).toBe(1);

    await vi.advanceTimersByTimeAsync(3_600_000);
    await n.flush();
    expect(parent.promptAttempts).toHaveLength(3);
  });

  it("does not send again after a crash between the send and markDelivered", async () => {
    vi.useFakeTimers({ now: T });
    const task = finish();
    const markDelivered = vi.spyOn(store, "markDelivered").mockImplementationOnce(() => {
      throw new Error("crashed before recording the delivery");
    });
    const n = notifier();

    parent.say(PARENT, "the parent's own question", "plan"); // the stream knows the parent's context
    await n.flush();
    expect(parent.prompts).toHaveLength(1);
    expect(parent.messageReads).toEqual([]);
    expect(rowOf(task)).toMatchObject({ attempts: 1, deliveredAt: null });

    await vi.advanceTimersByTimeAsync(1_000);
    await n.flush();
    expect(parent.messageReads).toEqual([PARENT]); // a retry always looks first
    expect(markDelivered).toHaveBeenCalledTimes(2);
    expect(parent.prompts).toHaveLength(1);
    expect(parent.announcements(task.id)).toBe(1);
    expect(rowOf(task)).toMatchObject({ attempts: 2, deliveredAt: T + 1_000 });
  });

  it("does not send again after a restart when the previous process had sent it", async () => {
    const task = finish();
    const row = rowOf(task);
    // the previous server counted the attempt, opencode accepted the prompt, then the server was killed
    store.beginAttempt(row.id);
    parent.say(PARENT, row.body);
    store.close();

    store = new SqliteTaskStore(path);
    expect(parent.contexts.get(PARENT)).toBeDefined(); // known from the stream, yet the retry reads
    await notifier(store).flush();
    expect(parent.messageReads).toEqual([PARENT]);
    expect(parent.prompts).toHaveLength(0);
    expect(parent.announcements(task.id)).toBe(1);
    expect(rowOf(task)).toMatchObject({ attempts: 2 });
    expect(rowOf(task).deliveredAt).not.toBeNull();
  });

  it("sends after a restart when the previous attempt never reached the parent", async () => {
    const task = finish();
    store.beginAttempt(rowOf(task).id); // counted, then killed before the prompt went out
    parent.say(PARENT, `Task ${task.id}_other is not this one`);
    store.close();

    store = new SqliteTaskStore(path);
    await notifier(store).flush();
    expect(parent.prompts).toHaveLength(1);
    expect(parent.announcements(task.id)).toBe(1);
    expect(rowOf(task).deliveredAt).not.toBeNull();
  });

  it("redelivers after a restart a message that was never attempted", async () => {
    const task = finish();
    store.close();
    store = new SqliteTaskStore(path);
    await notifier(store).flush();
    expect(parent.announcements(task.id)).toBe(1);
  });

  it("gives up at once when the parent session is gone (404 on prompt)", async () => {
    const task = finish();
    parent.failPrompt.push(new OpencodeRequestError("opencode refused to prompt a session (HTTP 404): not found", 404));
    const n = notifier();
    await n.flush();

    expect(rowOf(task)).toMatchObject({ attempts: 1, deliveredAt: null, nextAttemptAt: NEVER });
    expect(rowOf(task).lastError).toContain("404");
    expect(store.dueOutbox(Date.now() + 10 * 365 * 86_400_000)).toEqual([]);
    await n.flush();
    expect(parent.promptAttempts).toHaveLength(1);
  });

  it("gives up at once when reading the parent's messages says 404", async () => {
    const task = finish();
    parent.failMessages.push(new OpencodeRequestError("opencode refused to read session messages (HTTP 404)", 404));
    await notifier().flush();
    expect(rowOf(task).nextAttemptAt).toBe(NEVER);
    expect(parent.promptAttempts).toEqual([]);
  });

  it("retries other HTTP errors", async () => {
    const task = finish();
    parent.failPrompt.push(new OpencodeRequestError("opencode refused to prompt a session (HTTP 500)", 500));
    const before = Date.now();
    await notifier().flush();
    expect(rowOf(task).nextAttemptAt).toBeGreaterThanOrEqual(before + 1_000);
    expect(rowOf(task).nextAttemptAt).toBeLessThan(NEVER);
  });

  it("gives up after 16 attempts, with the backoff capped at 5 minutes before that", async () => {
    vi.useFakeTimers({ now: T });
    const almost = finish();
    const last = finish();
    for (let i = 0; i < 14; i++) store.beginAttempt(rowOf(almost).id);
    for (let i = 0; i < 15; i++) store.beginAttempt(rowOf(last).id);
    parent.failPrompt.push(new Error("still down"), new Error("still down"));
    await notifier().flush();

    expect(rowOf(almost)).toMatchObject({ attempts: 15, nextAttemptAt: T + 300_000, deliveredAt: null });
    expect(rowOf(last)).toMatchObject({ attempts: 16, nextAttemptAt: NEVER, deliveredAt: null });
  });
});
