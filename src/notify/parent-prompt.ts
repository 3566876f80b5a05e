import { OpencodeRequestError, type OpencodeApi } from "../opencode/client.js";
import { textOf } from "../opencode/transcript.js";
import { log } from "../log.js";
import type { TaskChange, TaskChanges } from "../tasks/records.js";
import { formatMs } from "../tasks/session-runner.js";
import type { OutboxMessage, OutboxRow, TaskStore } from "../tasks/store.js";
import { durationMs, isTerminal, type ModelRef, type Task } from "../tasks/task.js";

/** Backoff between delivery attempts: 1 s doubling to 5 min. */
const retryDelay = (attempts: number): number => Math.min(1_000 * 2 ** Math.max(0, attempts - 1), 300_000);
/** After this many failed attempts (about an hour), or at once when the parent session is gone, stop trying. */
const MAX_ATTEMPTS = 16;
const NEVER = Number.MAX_SAFE_INTEGER;

/**
 * Delivers the outbox: when a task with a parent session ends, the parent is told. The message is
 * written with the terminal state (see `outboxFor`), sent after the commit, marked delivered once opencode
 * accepts it, retried with backoff, and redelivered after a restart. A retry first looks in the parent's
 * messages, so a send that went through before a crash is never repeated.
 *
 * Wake-ups are batched per parent: while other tasks of the parent are still queued or running, a finished
 * task is only recorded in the parent (no model turn); the last one to finish, or any failure, wakes it
 * with one prompt summarising the whole batch. The decision is taken inside the commit of the terminal
 * state, one task at a time, so tasks finishing together still make exactly one wake-up.
 */
export class ParentNotifier {
  readonly #api: OpencodeApi;
  readonly #store: TaskStore;
  readonly #changes: TaskChanges;
  readonly #listener = (change: TaskChange): void => {
    if (isTerminal(change.task.status) && change.task.parent_session_id) this.flush();
  };
  #flushing: Promise<void> | null = null;
  #again = false;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(api: OpencodeApi, store: TaskStore, changes: TaskChanges) {
    this.#api = api;
    this.#store = store;
    this.#changes = changes;
    changes.on("change", this.#listener);
  }

  /** The outbox message for a task that just ended (the task records store it with the state). */
  outboxFor(task: Task): OutboxMessage | undefined {
    const parent = task.parent_session_id;
    if (!parent) return undefined;
    if (task.status !== "error" && this.#store.unfinishedChildren(parent, task.id) > 0) {
      return { taskId: task.id, kind: "parent_record", target: parent, body: recordText(task) };
    }
    const batch = this.#store
      .recordedSinceLastWake(parent)
      .map((id) => this.#store.get(id))
      .filter((t): t is Task => t !== undefined);
    return { taskId: task.id, kind: "parent_prompt", target: parent, body: wakeText(task, batch) };
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#changes.off("change", this.#listener);
  }

  /** Sends every message that is due; resolves when this round is done. Concurrent calls share one loop. */
  flush(): Promise<void> {
    if (this.#flushing) {
      this.#again = true;
      return this.#flushing;
    }
    this.#flushing = this.#drain().finally(() => {
      this.#flushing = null;
    });
    return this.#flushing;
  }

  async #drain(): Promise<void> {
    do {
      this.#again = false;
      // In order within a parent (records before the wake-up that summarises them); parents in parallel.
      const byParent = new Map<string, OutboxRow[]>();
      for (const row of this.#store.dueOutbox(Date.now())) byParent.set(row.target, [...(byParent.get(row.target) ?? []), row]);
      await Promise.all(
        [...byParent.values()].map(async (rows) => {
          for (const row of rows) {
            if (this.#closed) return;
            await this.#deliver(row);
          }
        }),
      );
    } while (this.#again && !this.#closed);
    if (!this.#closed) this.#schedule();
  }

  async #deliver(row: OutboxRow): Promise<void> {
    try {
      const retry = row.attempts > 0;
      this.#store.beginAttempt(row.id);
      const parent = await this.#api.messages(row.target, 50);
      if (retry && parent.some((m) => m.info.role === "user" && textOf(m).includes(`Task ${row.taskId} `))) {
        this.#store.markDelivered(row.id, Date.now());
        return;
      }
      await this.#api.prompt(row.target, { text: row.body, ...contextOf(parent), noReply: row.kind === "parent_record" });
      this.#store.markDelivered(row.id, Date.now());
      log.info("parent session prompted", { taskId: row.taskId, parent: row.target });
    } catch (error) {
      const gone = error instanceof OpencodeRequestError && error.status === 404;
      const giveUp = gone || row.attempts + 1 >= MAX_ATTEMPTS;
      this.#store.markAttemptFailed(row.id, String(error), giveUp ? NEVER : Date.now() + retryDelay(row.attempts + 1));
      log.warn(giveUp ? "gave up prompting the parent session" : "could not prompt the parent session; will retry", {
        taskId: row.taskId,
        parent: row.target,
        error: String(error),
      });
    }
  }

  /** Wakes up for the earliest retry still pending. */
  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.#closed) return;
    const pending = this.#store.dueOutbox(NEVER - 1);
    if (pending.length === 0) return;
    const next = Math.min(...pending.map((r) => r.nextAttemptAt));
    this.#timer = setTimeout(() => void this.flush(), Math.max(0, next - Date.now()));
    this.#timer.unref();
  }
}

/** The parent's current agent and model, from its latest user message: without them opencode would switch agents. */
function contextOf(messages: Array<{ info: { role: string } }>): { agent?: string; model?: ModelRef } {
  const lastUser = messages.map((m) => m.info).findLast((info) => info.role === "user") as
    | { agent?: string; model?: ModelRef }
    | undefined;
  if (!lastUser) return {};
  return {
    ...(lastUser.agent ? { agent: lastUser.agent } : {}),
    ...(lastUser.model ? { model: { providerID: lastUser.model.providerID, modelID: lastUser.model.modelID } } : {}),
  };
}

export function parentPromptText(task: Task): string {
  return `${headline(task)}${preview(task, 300)}\nRead the full output with background_output {"task_id": "${task.id}"}.`;
}

function headline(task: Task): string {
  const took = formatMs(durationMs(task, task.completed_at ?? Date.now()) ?? 0);
  const outcome =
    task.status === "completed"
      ? `completed in ${took}`
      : task.status === "error"
        ? `failed after ${took}: ${task.error}`
        : `was cancelled after ${took}${task.error ? ` (${task.error})` : ""}`;
  return `[BACKGROUND TASK ${task.status.toUpperCase()}] Task ${task.id} "${task.description}" (agent ${task.agent}) ${outcome}.`;
}

function preview(task: Task, max: number): string {
  return task.result ? `\nPreview: ${task.result.replace(/\s+/g, " ").slice(0, max)}` : "";
}

/** Recorded without a model turn: other tasks of the same parent are still going. */
export function recordText(task: Task): string {
  return (
    `${headline(task)}${preview(task, 300)}\nRead the full output with background_output {"task_id": "${task.id}"}.\n` +
    `Other background tasks of this session are still running: you will be prompted once when they are all done.`
  );
}

/** The wake-up: the task that ended the batch, then one line per task of the batch. */
export function wakeText(task: Task, recorded: Task[]): string {
  if (recorded.length === 0) return parentPromptText(task);
  const line = (t: Task): string =>
    `- ${t.id} "${t.description}" (${t.agent}): ${t.status} in ${formatMs(durationMs(t, t.completed_at ?? Date.now()) ?? 0)}` +
    (t.status === "completed" ? `: ${(t.result ?? "").replace(/\s+/g, " ").slice(0, 120)}` : t.error ? `: ${t.error}` : "");
  return (
    `${headline(task)}${preview(task, 300)}\n` +
    `All ${recorded.length + 1} background tasks of this batch have ended:\n${[...recorded, task].map(line).join("\n")}\n` +
    `Read any full output with background_output {"task_id": "<id>"}.`
  );
}
