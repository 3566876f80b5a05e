import type { Task } from "./task.js";

/**
 * `parent_prompt` wakes the parent session (a model turn); `parent_record` only records the outcome in it
 * (no turn) while other tasks of the same parent are still going.
 */
export type OutboxKind = "parent_prompt" | "parent_record";

/** A message to deliver after the state change it belongs to has been committed. */
export interface OutboxMessage {
  taskId: string;
  /** One message of each kind per task, ever: a second one for the same task is ignored. */
  kind: OutboxKind;
  /** Where it goes (the parent session id). */
  target: string;
  body: string;
}

export interface OutboxRow extends OutboxMessage {
  id: number;
  attempts: number;
  nextAttemptAt: number;
  deliveredAt: number | null;
  lastError: string | null;
}

export interface ListOptions {
  limit?: number;
  offset?: number;
  /** Only this owner's tasks. */
  owner?: string;
}

/**
 * Where tasks live. Every state change is written here before anyone is told about it; a terminal
 * state and the outbox message that announces it are written in one transaction.
 */
export interface TaskStore {
  put(task: Task, outbox?: OutboxMessage): void;
  get(id: string): Task | undefined;
  /** Newest first. */
  list(options?: ListOptions): Task[];
  /** Queued and running tasks, in creation order (the order they were queued in). */
  unfinished(): Task[];
  count(): number;
  /** The task whose session this is. */
  findBySession(sessionID: string): Task | undefined;
  /** Tasks launched from this session, and from their sessions, and so on; newest first. */
  descendantsOf(sessionID: string): Task[];
  /** Queued or running tasks of this parent session, other than `exceptTaskId`. */
  unfinishedChildren(parentSessionID: string, exceptTaskId: string): number;
  /** Tasks recorded in the parent (`parent_record`) since its last wake-up: the batch a wake-up summarises. */
  recordedSinceLastWake(target: string): string[];
  /** Deletes finished tasks older than `finishedBefore`, then the oldest finished beyond `maxTasks`. */
  prune(options: { finishedBefore: number; maxTasks: number }): number;

  /** Undelivered outbox rows due at `now`, oldest first. */
  dueOutbox(now: number): OutboxRow[];
  outboxFor(taskId: string): OutboxRow[];
  /** Counts an attempt before it is made, so that after a crash mid-send the next one checks first. */
  beginAttempt(id: number): void;
  markDelivered(id: number, at: number): void;
  markAttemptFailed(id: number, error: string, nextAttemptAt: number): void;

  close(): void;
}
