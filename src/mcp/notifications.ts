import type { LoggingLevel } from "@modelcontextprotocol/sdk/types.js";
import type { TaskChange } from "../tasks/records.js";
import type { Task } from "../tasks/task.js";
import { endedText, oneLine, taskLine } from "../tasks/task-text.js";
import { toView, type QueuePositions } from "./task-view.js";

/** What is pushed about a task change; push.ts decides who gets it. */

export const LOGGER = "background-agents";
export const taskUri = (taskId: string): string => `background-task://${taskId}`;

/** Events logged to the client: every status change, and provider retries. */
const LOGGED_EVENTS = new Set<TaskChange["event"]>(["task.queued", "task.running", "task.retrying", "task.completed", "task.error", "task.cancelled"]);

/** The result's preview in a logging message, in characters. */
const RESULT_PREVIEW_CHARS = 200;

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
      message: taskLine(task, { queuePosition: view.queue_position }),
      task_id: view.task_id,
      status: view.status,
      agent: view.agent,
      description: view.description,
      session_id: view.session_id,
      parent_session_id: view.parent_session_id,
      duration_ms: view.duration_ms,
      queue_position: view.queue_position,
      error: view.error,
      result_preview: view.result === null ? null : oneLine(view.result, RESULT_PREVIEW_CHARS),
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

/** The channel event for a task that has ended: which task, how it ended, a preview or the error, and how to read it. */
export function channelEvent(task: Task): ChannelEvent {
  return { content: endedText(task), meta: { task_id: task.id, status: task.status, agent: task.agent } };
}
