import { EventEmitter } from "node:events";
import { clip } from "../opencode/transcript.js";
import { DEFAULT_POLICY } from "./policy.js";
import type { ListOptions, OutboxMessage, TaskStore } from "./store.js";
import {
  isTerminal,
  transition,
  type Task,
  type TaskProgress,
  type TaskStatus,
  type TerminalFields,
  type TerminalStatus,
} from "./task.js";

/**
 * What changed about a task: `task.<status>` for status changes, `task.retrying` when the provider fails
 * and opencode retries, else `task.session` / `task.progress`.
 */
export interface TaskChange {
  event: `task.${TaskStatus}` | "task.session" | "task.progress" | "task.retrying";
  task: Task;
}

/** Where the notifiers hear of task changes, each one after it is stored. */
export interface TaskChanges {
  on(event: "change", listener: (change: TaskChange) => void): unknown;
  off(event: "change", listener: (change: TaskChange) => void): unknown;
}

export interface TaskRecordsOptions {
  /** The outbox message a terminal state carries (written in the same transaction), if any. */
  outboxFor?: (task: Task) => OutboxMessage | undefined;
  /** Longest result kept, in characters (TaskPolicy.maxResultChars). */
  maxResultChars?: number;
}

/**
 * The one writer of task state. Every change goes through `transition()` (a terminal task never changes
 * again), is stored, and only then announced as `change`: a notifier never tells of a state the store
 * does not have. Queued and running tasks are also kept in memory as last written, so the many reads
 * while tasks run do not parse JSON from SQLite each time; the store stays the truth.
 */
export class TaskRecords extends EventEmitter<{ change: [TaskChange] }> implements TaskChanges {
  readonly #store: TaskStore;
  readonly #outboxFor: (task: Task) => OutboxMessage | undefined;
  readonly #maxResultChars: number;
  readonly #unfinished = new Map<string, Task>();
  readonly #terminalWaiters = new Map<string, Set<() => void>>();

  constructor(store: TaskStore, options: TaskRecordsOptions = {}) {
    super();
    this.#store = store;
    this.#outboxFor = options.outboxFor ?? (() => undefined);
    this.#maxResultChars = options.maxResultChars ?? DEFAULT_POLICY.maxResultChars;
    for (const task of store.unfinished()) this.#unfinished.set(task.id, task);
  }

  // ---- reads ----

  get(id: string): Task | undefined {
    return this.#unfinished.get(id) ?? this.#store.get(id);
  }

  /** Newest first. */
  list(options?: ListOptions): Task[] {
    return this.#store.list(options);
  }

  /** Queued and running tasks, in creation order (the order they were queued in). */
  unfinished(): Task[] {
    return [...this.#unfinished.values()];
  }

  /** The task whose session this is. */
  findBySession(sessionID: string): Task | undefined {
    return this.#store.findBySession(sessionID);
  }

  /** The tasks launched from `sessionID`, from their sessions, and so on; newest first. */
  descendants(sessionID: string): Task[] {
    return this.#store.descendantsOf(sessionID);
  }

  /** Resolves when the task is terminal, `timeoutMs` has passed or `signal` aborts, whichever is first. */
  async waitForTerminal(id: string, timeoutMs: number, signal?: AbortSignal): Promise<Task | undefined> {
    const task = this.get(id);
    if (!task || isTerminal(task.status)) return task;
    await new Promise<void>((resolve) => {
      const waiters = this.#terminalWaiters.get(id) ?? new Set();
      this.#terminalWaiters.set(id, waiters);
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        waiters.delete(done);
        if (waiters.size === 0 && this.#terminalWaiters.get(id) === waiters) this.#terminalWaiters.delete(id);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener("abort", done, { once: true });
      waiters.add(done);
    });
    return this.get(id);
  }

  // ---- writes ----

  /** A new task has its place in its agent's line. */
  add(task: Task): void {
    this.#commit(task, "task.queued");
  }

  /** The job has a slot: the task is running from now on. False when it ended while waiting. */
  markRunning(id: string): boolean {
    const task = this.get(id);
    const next = task && transition(task, "running", Date.now());
    if (!next) return false;
    this.#commit(next, "task.running");
    return true;
  }

  /** `embedded`: the session runs on an opencode we spawned, which does not outlive this server. */
  markSession(id: string, sessionID: string, embedded: boolean): void {
    this.#update(id, { session_id: sessionID, embedded }, "task.session");
  }

  /** opencode has accepted a prompt for the task's session. */
  markPrompted(id: string): void {
    this.#update(id, { prompted_at: Date.now() }, "task.session");
  }

  /** `retrying` announces the change as `task.retrying` (a provider retry) rather than `task.progress`. */
  progress(id: string, progress: TaskProgress, retrying = false): void {
    this.#update(id, { progress }, retrying ? "task.retrying" : "task.progress");
  }

  /**
   * Ends a task, once: a terminal task never changes again. The result is clipped to the policy's limit.
   * The final progress goes in the same write (one write and one announcement per ending).
   * Returns whether this call ended it.
   */
  finish(id: string, status: TerminalStatus, fields: TerminalFields): boolean {
    const task = this.get(id);
    const result = typeof fields.result === "string" ? clip(fields.result, this.#maxResultChars) : fields.result;
    const next = task && transition(task, status, Date.now(), { ...fields, ...(result === undefined ? {} : { result }) });
    if (!next) return false;
    this.#commit(next, `task.${status}`, this.#outboxFor(next));
    for (const wake of this.#terminalWaiters.get(id) ?? []) wake();
    return true;
  }

  /** Deletes finished tasks older than `finishedBefore`, then the oldest finished beyond `maxTasks`. */
  prune(options: { finishedBefore: number; maxTasks: number }): number {
    return this.#store.prune(options);
  }

  #update(id: string, patch: Partial<Task>, event: TaskChange["event"]): void {
    const task = this.get(id);
    if (!task || isTerminal(task.status)) return;
    this.#commit({ ...task, ...patch }, event);
  }

  /** Store first, then announce. */
  #commit(task: Task, event: TaskChange["event"], outbox?: OutboxMessage): void {
    this.#store.put(task, outbox);
    if (isTerminal(task.status)) this.#unfinished.delete(task.id);
    else this.#unfinished.set(task.id, task);
    this.emit("change", { event, task });
  }
}
