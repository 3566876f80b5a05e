import type { LoggingLevel } from "@modelcontextprotocol/sdk/types.js";
import type { TaskChange } from "../tasks/records.js";
import { formatMs } from "../tasks/session-runner.js";
import { durationMs, type Task } from "../tasks/task.js";
import { oneLine } from "../opencode/transcript.js";
import { toView, type QueuePositions } from "./task-view.js";

/** What is pushed about a task change; push.ts decides who gets it. */

export const LOGGER = "background-agents";
export const taskUri = (taskId: string): string => `background-task://${taskId}`;

/** Events logged to the client: every status change, and provider retries. */
const LOGGED_EVENTS = new Set<TaskChange["event"]>(["task.queued", "task.running", "task.retrying", "task.completed", "task.error", "task.cancelled"]);

export interface TaskLogMessage {
  level: LoggingLevel;
  data: Record<string, unknown>;
}

/** The `notifications/message` a change is announced with, or undefined for changes that are not logged. */
export function taskLogMessage({ event, task }: TaskChange, queue: QueuePositions): TaskLogMessage | undefined {
  if (!LOGGED_EVENTS.has(event)) return undefined;
  const view = toView(task, queue);
  return {
    level: task.status === "error" ? "error" : event === "task.retrying" ? "warning" : "info",
    data: {
      event,
      task_id: view.task_id,
      status: view.status,
      agent: view.agent,
      description: view.description,
      session_id: view.session_id,
      parent_session_id: view.parent_session_id,
      duration_ms: view.duration_ms,
      queue_position: view.queue_position,
      error: view.error,
      result_preview: view.result === null ? null : view.result.slice(0, 200),
      ...(event === "task.retrying" ? { retry: view.progress.retry } : {}),
    },
  };
}

/** Claude Code's channel notification: its `content` reaches the model as a `<channel>` event, `meta` as the tag's attributes. */
export const CLAUDE_CHANNEL_METHOD = "notifications/claude/channel";
/** The experimental capability that makes Claude Code listen for it. */
export const CLAUDE_CHANNEL_CAPABILITY = "claude/channel";

export interface ChannelEvent {
  content: string;
  /** Identifier keys and string values: Claude Code turns them into attributes of the `<channel>` tag. */
  meta: Record<string, string>;
}

/** The preview's length in the channel event: 300 characters, then "…" when cut. */
const CHANNEL_PREVIEW_CHARS = 301;

/** The channel event for a task that has ended: which task, how it ended, a preview or the error, and how to read it. */
export function channelEvent(task: Task): ChannelEvent {
  const ms = durationMs(task, task.completed_at ?? Date.now());
  const took = ms === null ? null : formatMs(ms);
  const outcome =
    task.status === "completed"
      ? `completed${took ? ` in ${took}` : ""}`
      : task.status === "error"
        ? `failed${took ? ` after ${took}` : ""}: ${task.error ?? "unknown error"}`
        : `was cancelled${took ? ` after ${took}` : " before it started"}${task.error ? ` (${task.error})` : ""}`;
  const lines = [`Background task ${task.id} "${task.description}" (agent ${task.agent}) ${outcome}.`];
  if (task.status === "completed") lines.push(task.result ? `Preview: ${oneLine(task.result, CHANNEL_PREVIEW_CHARS)}` : "The agent wrote no text.");
  lines.push(`Read its output with background_output {"task_id": "${task.id}"}.`);
  return { content: lines.join("\n"), meta: { task_id: task.id, status: task.status, agent: task.agent } };
}

