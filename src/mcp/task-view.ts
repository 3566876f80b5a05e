import { durationMs, type Task } from "../tasks/task.js";
import type { TaskView } from "./schemas.js";

/** Where a queued task stands in its agent's line (the task manager, or an owner's view of it). */
export interface QueuePositions {
  /** 1 = next to start among its agent's waiting tasks; null when the task is not waiting. */
  queuePosition(task: Task): number | null;
}

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
