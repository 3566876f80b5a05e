import type { LoggingLevel } from "@modelcontextprotocol/sdk/types.js";
import type { TaskChange } from "../tasks/manager.js";
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
