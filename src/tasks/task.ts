/**
 * The task: one piece of background work, run as one opencode session.
 *
 * `queued -> running -> completed | error | cancelled`; `queued` may also end `cancelled` or `error` directly.
 * Terminal states are final: every transition goes through `transition()`, which refuses to leave one.
 */

import type { ModelRef } from "../opencode/client.js";

export const TASK_STATUSES = ["queued", "running", "completed", "error", "cancelled"] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];
export type TerminalStatus = Extract<TaskStatus, "completed" | "error" | "cancelled">;

export interface Todo {
  content: string;
  status: string;
}

export interface TaskProgress {
  /** Distinct tool calls (by call id) the session has made. */
  tool_calls: number;
  last_tool: string | null;
  /** The latest assistant text seen, cut to a preview. */
  last_message: string | null;
  /** Todos the session left unfinished, recorded when it goes idle. */
  incomplete_todos?: Todo[];
  /** The provider failed and opencode is retrying (cleared when it works again). */
  retry?: { attempt: number; message: string; next_at: string } | null;
  /** The latest permission request of the session and what became of it. */
  permission?: { request_id: string; permission: string; patterns: string[]; decision: "allowed" | "rejected" | "waiting" | string } | null;
  /** Continue prompts sent because the session stopped with incomplete todos. */
  todo_continuations?: number;
  /** Set when a running task has shown no event for longer than the stall limit. */
  stalled_since?: string | null;
}

export interface Task {
  id: string;
  /** Who launched it (a token's owner name over HTTP; "local" on stdio). Only its owner sees it. */
  owner: string;
  description: string;
  prompt: string;
  agent: string;
  model: ModelRef | null;
  parent_session_id: string | null;
  /** 1 for a task launched from outside; a task launched from a background session is one deeper. */
  depth: number;
  /** Per-task watchdog; null = none. */
  timeout_ms: number | null;
  status: TaskStatus;
  session_id: string | null;
  /** Epoch ms. */
  created_at: number;
  started_at: number | null;
  completed_at: number | null;
  /** Set once opencode has accepted our prompt (prompt_async answered 204). */
  prompted_at: number | null;
  /** The session runs on an opencode we spawned, which does not outlive this server. */
  embedded: boolean;
  progress: TaskProgress;
  result: string | null;
  error: string | null;
}

const TERMINAL: ReadonlySet<TaskStatus> = new Set<TaskStatus>(["completed", "error", "cancelled"]);

export function isTerminal(status: TaskStatus): status is TerminalStatus {
  return TERMINAL.has(status);
}

const ALLOWED: Record<TaskStatus, readonly TaskStatus[]> = {
  queued: ["running", "cancelled", "error"],
  running: ["completed", "error", "cancelled"],
  completed: [],
  error: [],
  cancelled: [],
};

export function canTransition(from: TaskStatus, to: TaskStatus): boolean {
  return ALLOWED[from].includes(to);
}

/** What a launch supplies; everything else starts empty. */
export type NewTask = Pick<Task, "owner" | "description" | "prompt" | "agent" | "model" | "parent_session_id" | "timeout_ms"> & {
  /** Default 1. */
  depth?: number;
};

export function createTask(id: string, input: NewTask, now: number): Task {
  return {
    id,
    ...input,
    depth: input.depth ?? 1,
    status: "queued",
    session_id: null,
    created_at: now,
    started_at: null,
    completed_at: null,
    prompted_at: null,
    embedded: false,
    progress: { tool_calls: 0, last_tool: null, last_message: null },
    result: null,
    error: null,
  };
}

/** What a terminal state carries besides its status: the result or error, and the final progress. */
export interface TerminalFields {
  result?: string | null;
  error?: string | null;
  progress?: TaskProgress;
}

/**
 * Moves a task to `to`, returning the new task, or null when the move is not allowed
 * (a terminal task never changes again; a duplicate event becomes a no-op).
 */
export function transition(task: Task, to: TaskStatus, now: number, fields: TerminalFields = {}): Task | null {
  if (!canTransition(task.status, to)) return null;
  const next: Task = { ...task, status: to, ...fields };
  if (to === "running") next.started_at = now;
  if (isTerminal(to)) next.completed_at = now;
  return next;
}

export function durationMs(task: Task, now: number): number | null {
  if (task.started_at === null) return null;
  return (task.completed_at ?? now) - task.started_at;
}
