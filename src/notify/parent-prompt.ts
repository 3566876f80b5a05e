import { OpencodeRequestError, type OpencodeApi } from "../opencode/client.js";
import { latestContext, type SessionContexts } from "../opencode/session-context.js";
import { textOf } from "../opencode/transcript.js";
import { log } from "../log.js";
import type { TaskChange, TaskChanges } from "../tasks/records.js";
import type { OutboxMessage, OutboxRow, TaskStore } from "../tasks/store.js";
import { isTerminal, type Task } from "../tasks/task.js";
import { endedSummary, endedText, taskLine } from "../tasks/task-text.js";

/** Backoff between delivery attempts: 1 s doubling to 5 min. */
const retryDelay = (attempts: number): number => Math.min(1_000 * 2 ** Math.max(0, attempts - 1), 300_000);
/** After this many failed attempts (about an hour), or at once when the parent session is gone, stop trying. */
const MAX_ATTEMPTS = 16;
const NEVER = Number.MAX_SAFE_INTEGER;

/**
 * Delivers the outbox: when a task with a parent session ends, the parent is told. The message is
 * written with the terminal state (see `outboxFor`), sent after the commit, marked delivered once opencode
 * accepts it, retried with backoff, and redelivered after a restart. A retry first looks in the parent's
 * messages, so a send that went through before a crash is never repeated. A first attempt takes the
 * parent's agent and model from the event stream (`SessionContexts`) and reads the messages only when
 * the stream has not told them.
 *
 * Wake-ups are batched per parent: while other tasks of the parent are still queued or running, a finished
 * task is only recorded in the parent (no model turn); the last one to finish, or any failure, wakes it
 * with one prompt summarising the whole batch. The decision is taken inside the commit of the terminal
 * state, one task at a time, so tasks finishing together still make exactly one wake-up.
 *
 * Each parent has its own lane: its messages go in outbox order (records before the wake-up that
 * summarises them), while a message for another parent starts at once instead of waiting for them.
 */
export class ParentNotifier {
  readonly #api: OpencodeApi;
  readonly #store: TaskStore;
  readonly #changes: TaskChanges;
  readonly #contexts: SessionContexts;
  readonly #listener = (change: TaskChange): void => {
    if (isTerminal(change.task.status) && change.task.parent_session_id) this.#sendSoon();
  };
  /** A send is due after this turn: set while one is waiting. */
  #soon: NodeJS.Immediate | undefined;
  /** The last delivery queued per parent; the next one for that parent follows it. */
  readonly #lanes = new Map<string, Promise<void>>();
  /** Rows queued or being delivered: a row is sent by one lane only. */
  readonly #pending = new Set<number>();
  readonly #idle: Array<() => void> = [];
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(api: OpencodeApi, store: TaskStore, changes: TaskChanges, contexts: SessionContexts) {
    this.#api = api;
    this.#store = store;
    this.#changes = changes;
    this.#contexts = contexts;
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
    clearImmediate(this.#soon);
    this.#soon = undefined;
    this.#changes.off("change", this.#listener);
  }

  /** Sends every message that is due; resolves once nothing is left to send or in flight. */
  flush(): Promise<void> {
    this.#sendDue();
    return this.#pending.size === 0 && !this.#soon ? Promise.resolve() : new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * After the other listeners of this change (the MCP pushes) and the other tasks that end in the same
   * turn: a request started in the middle of them delayed their notifications, and one outbox read then
   * serves them all.
   */
  #sendSoon(): void {
    this.#soon ??= setImmediate(() => {
      this.#soon = undefined;
      this.#sendDue();
    });
  }

  #sendDue(): void {
    if (!this.#closed) for (const row of this.#store.dueOutbox(Date.now())) this.#enqueue(row);
    if (this.#pending.size === 0 && !this.#soon) this.#settled();
  }

  /** Nothing is due, in flight or about to be sent: wait for the next retry, and tell flush() callers. */
  #settled(): void {
    this.#schedule();
    for (const resolve of this.#idle.splice(0)) resolve();
  }

  #enqueue(row: OutboxRow): void {
    if (this.#pending.has(row.id)) return;
    this.#pending.add(row.id);
    const send = (): Promise<void> => (this.#closed ? Promise.resolve() : this.#deliver(row));
    const before = this.#lanes.get(row.target);
    const lane = (before ? before.then(send) : send())
      // only a store that fails while recording the attempt gets here; the lane must go on
      .catch((error: unknown) => log.error("outbox delivery failed", { taskId: row.taskId, error: String(error) }))
      .finally(() => {
        this.#pending.delete(row.id);
        if (this.#lanes.get(row.target) === lane) this.#lanes.delete(row.target);
        if (this.#pending.size === 0 && !this.#soon) this.#settled();
      });
    this.#lanes.set(row.target, lane);
  }

  async #deliver(row: OutboxRow): Promise<void> {
    try {
      const retry = row.attempts > 0;
      this.#store.beginAttempt(row.id);
      // A retry always reads: an earlier attempt may have got through, and a prompt is never repeated.
      let context = retry ? undefined : this.#contexts.get(row.target);
      if (context === undefined) {
        const parent = await this.#api.messages(row.target, 50);
        if (retry && parent.some((m) => m.info.role === "user" && textOf(m).includes(`Task ${row.taskId} `))) {
          this.#store.markDelivered(row.id, Date.now());
          return;
        }
        context = latestContext(parent);
      }
      await this.#api.prompt(row.target, { text: row.body, ...context, noReply: row.kind === "parent_record" });
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
    this.#timer = setTimeout(() => this.#sendDue(), Math.max(0, next - Date.now()));
    this.#timer.unref();
  }
}

/** Marks our prompts in the parent's conversation, so a model tells them from its user's words. */
const tag = (task: Task): string => `[BACKGROUND TASK ${task.status.toUpperCase()}] `;

export function parentPromptText(task: Task): string {
  return `${tag(task)}${endedText(task)}`;
}

/** Recorded without a model turn: other tasks of the same parent are still going. */
export function recordText(task: Task): string {
  return (
    `${parentPromptText(task)}\n` +
    `Other background tasks of this session are still running: you will be prompted once when they are all done.`
  );
}

/** The wake-up: the task that ended the batch, then one line per task of the batch. */
export function wakeText(task: Task, recorded: Task[]): string {
  if (recorded.length === 0) return parentPromptText(task);
  return (
    `${tag(task)}${endedSummary(task)}\n` +
    `All ${recorded.length + 1} background tasks of this batch have ended:\n${[...recorded, task].map((t) => `- ${taskLine(t)}`).join("\n")}\n` +
    `Read any full output with background_output {"task_id": "<id>"}.`
  );
}
