import type { TaskManager } from "../tasks/manager.js";
import { durationMs, type Task } from "../tasks/task.js";
import { formatMs } from "../tasks/session-runner.js";
import type { TaskView } from "./schemas.js";

/** Where a queued task stands in its agent's line (the task manager, or an owner's view of it). */
export type QueuePositions = Pick<TaskManager, "queuePosition">;

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The public shape of a task: what `background_output`, the resource and the notifications carry. */
export function toView(task: Task, manager: QueuePositions, now = Date.now()): TaskView {
  return {
    task_id: task.id,
    status: task.status,
    agent: task.agent,
    description: task.description,
    session_id: task.session_id,
    parent_session_id: task.parent_session_id,
    created_at: new Date(task.created_at).toISOString(),
    started_at: iso(task.started_at),
    completed_at: iso(task.completed_at),
    duration_ms: durationMs(task, now),
    queue_position: manager.queuePosition(task),
    progress: task.progress,
    result: task.result,
    error: task.error,
  };
}

/** One or a few lines a model can read at a glance. */
export function summarize(view: TaskView): string {
  const took = view.duration_ms === null ? "" : ` after ${formatMs(view.duration_ms)}`;
  const head = `Task ${view.task_id} (${view.agent}: "${view.description}")`;
  switch (view.status) {
    case "queued":
      return `${head} is queued, position ${view.queue_position ?? "?"} among the agent's waiting tasks.`;
    case "running": {
      const tools = view.progress.tool_calls ? `, ${view.progress.tool_calls} tool call(s), last ${view.progress.last_tool}` : "";
      const said = view.progress.last_message ? `\nLatest: ${view.progress.last_message}` : "";
      return `${head} is running${took}${tools}.${said}`;
    }
    case "completed": {
      const todos = view.progress.incomplete_todos?.length
        ? `\nIncomplete todos: ${view.progress.incomplete_todos.map((t) => t.content).join("; ")}`
        : "";
      return `${head} completed${took}.${todos}\nResult:\n${view.result || "(the agent wrote no text)"}`;
    }
    case "error":
      return `${head} failed${took}: ${view.error}`;
    case "cancelled":
      return `${head} was cancelled${took}${view.error ? `: ${view.error}` : ""}.`;
  }
}
