import { randomBytes } from "node:crypto";
import type { CreateTaskOptions, TaskStore } from "@modelcontextprotocol/sdk/experimental/tasks/interfaces.js";
import {
  ErrorCode,
  McpError,
  type CallToolResult,
  type Request,
  type RequestId,
  type Result,
  type Task as McpTask,
} from "@modelcontextprotocol/sdk/types.js";
import { isTerminal, type Task, type TaskStatus } from "../tasks/task.js";
import { statusMessage, taskReport } from "../tasks/task-text.js";
import { decodeCursor, encodeCursor } from "./cursor.js";
import type { OwnedTasks } from "./owned-tasks.js";
import { toView, type QueuePositions } from "./task-view.js";

/**
 * MCP Tasks (spec 2025-11-25) over our tasks. Every task of the owner is an MCP task with the same id:
 * `tasks/get`, `tasks/result`, `tasks/list` and `tasks/cancel` (the SDK's handlers, installed because
 * the server has a task store) read and cancel our tasks through `McpTaskStore`. Nothing about a task
 * is kept here: the task records are the only record.
 */

/** How often a client should poll tasks/get; also how often the SDK's tasks/result looks again while it waits. */
export const TASK_POLL_INTERVAL_MS = 1_000;
export const TASK_PAGE_SIZE = 100;
/** How long a launch refused in a task-augmented call stays readable as a failed MCP task. */
const REFUSED_TTL_MS = 60 * 60_000;
/** How long a plain call's answer waits for the SDK to read it (it does so at once). */
const ANSWER_TTL_MS = 60_000;
/** At most this many of those answers are held per connection; the oldest go first. */
const MAX_SETTLED = 1_000;

const MCP_STATUS: Record<TaskStatus, McpTask["status"]> = {
  queued: "working",
  running: "working",
  completed: "completed",
  error: "failed",
  cancelled: "cancelled",
};

/** Our task as an MCP task. No TTL: a finished task is kept until retention prunes it. */
export function toMcpTask(task: Task, queue: QueuePositions): McpTask {
  return {
    taskId: task.id,
    status: MCP_STATUS[task.status],
    statusMessage: statusMessage(task, { queuePosition: queue.queuePosition(task) }),
    createdAt: new Date(task.created_at).toISOString(),
    lastUpdatedAt: new Date(task.completed_at ?? task.started_at ?? task.created_at).toISOString(),
    ttl: null,
    pollInterval: TASK_POLL_INTERVAL_MS,
  };
}

/** What tasks/result gives for a finished task: its background_output view. Anything but completed is an error result. */
export function finalResult(task: Task, queue: QueuePositions): CallToolResult {
  const view = toView(task, queue);
  return {
    content: [{ type: "text", text: taskReport(task, { queuePosition: view.queue_position }) }],
    structuredContent: view,
    ...(task.status === "completed" ? {} : { isError: true }),
  };
}

/** The key under which background_task hands its launch answer to `createTask` (`CreateTaskOptions.context`). */
export const LAUNCH_ANSWER = "launchAnswer";

/** An MCP task that was over when it was created, with its result. */
interface Settled {
  task: McpTask;
  result: CallToolResult;
  expiresAt: number;
  /** Forgotten once its result is read. */
  once: boolean;
}

/**
 * The SDK's task store for one connection, backed by the owner's tasks. The SDK's own tasks/* handlers
 * read it (its tool-level getTask/getTaskResult callbacks are never called: SDK bug), so this is where
 * MCP tasks live:
 * - `createTask` is asked by background_task with the launch's answer. A task-augmented call gets our
 *   task (same id). A launch refused in such a call (unknown agent, full queue, ...) gets a failed MCP
 *   task whose result says why. A plain call, which the SDK routes through task creation too (it then
 *   waits for the task to finish), gets an MCP task already completed with the launch's answer, so the
 *   SDK returns that answer at once, exactly as a plain tool would.
 * - `updateTaskStatus(…, "cancelled")`, which is all tasks/cancel does, cancels our task: a queued one
 *   leaves its queue, a running one has its session aborted.
 * - `listTasks` pages through the owner's tasks, newest first (settled answers are not listed).
 * Another owner's task is not found, whichever session asks.
 */
export class McpTaskStore implements TaskStore {
  readonly #tasks: OwnedTasks;
  readonly #onUse: () => void;
  readonly #settled = new Map<string, Settled>();

  /** `onUse`: called when the client shows it speaks MCP Tasks (a task-augmented call or any tasks/* request). */
  constructor(tasks: OwnedTasks, onUse: () => void = () => undefined) {
    this.#tasks = tasks;
    this.#onUse = onUse;
  }

  async createTask(options: CreateTaskOptions, _requestId: RequestId, request: Request): Promise<McpTask> {
    this.#sweep();
    const answer = options.context?.[LAUNCH_ANSWER] as CallToolResult | undefined;
    if (!answer) throw new Error(`createTask needs the launch's answer as context.${LAUNCH_ANSWER}`);
    // The same test as the SDK's tools/call handler: a `task` in the params is a task-augmented call.
    if (!request.params?.task) return this.#settle(answer, "completed", ANSWER_TTL_MS, true);
    this.#onUse();
    const taskId = answer.isError ? undefined : (answer.structuredContent as { task_id?: unknown } | undefined)?.task_id;
    if (typeof taskId !== "string") return this.#settle(answer, "failed", Math.min(options.ttl ?? REFUSED_TTL_MS, REFUSED_TTL_MS), false);
    const task = this.#tasks.get(taskId);
    if (!task) throw new McpError(ErrorCode.InternalError, `Task ${taskId} was launched but is not in the store`);
    return toMcpTask(task, this.#tasks);
  }

  async getTask(taskId: string): Promise<McpTask | null> {
    this.#onUse();
    this.#sweep();
    const settled = this.#settled.get(taskId);
    if (settled) return settled.task;
    const task = this.#tasks.get(taskId);
    return task ? toMcpTask(task, this.#tasks) : null;
  }

  async getTaskResult(taskId: string): Promise<Result> {
    this.#sweep();
    const settled = this.#settled.get(taskId);
    if (settled) {
      if (settled.once) this.#settled.delete(taskId);
      return settled.result;
    }
    const task = this.#tasks.get(taskId);
    if (!task) throw new McpError(ErrorCode.InvalidParams, `Task not found: ${taskId}`);
    if (!isTerminal(task.status)) throw new McpError(ErrorCode.InvalidRequest, `Task ${taskId} has not finished (${task.status})`);
    return finalResult(task, this.#tasks);
  }

  async storeTaskResult(taskId: string): Promise<void> {
    throw new Error(`The result of task ${taskId} is the task manager's to record`);
  }

  /** Only cancelling comes from outside (tasks/cancel); a task's other changes are its own. */
  async updateTaskStatus(taskId: string, status: McpTask["status"]): Promise<void> {
    this.#onUse();
    if (status !== "cancelled") throw new McpError(ErrorCode.InvalidParams, `Task ${taskId}: only "cancelled" can be set from outside, not "${status}"`);
    if (this.#settled.has(taskId)) throw new McpError(ErrorCode.InvalidParams, `Cannot cancel task in terminal status: ${this.#settled.get(taskId)!.task.status}`);
    const reason = await this.#tasks.cancel(taskId);
    if (reason === "not found") throw new McpError(ErrorCode.InvalidParams, `Task not found: ${taskId}`);
    // It ended between the SDK's look and ours.
    if (reason !== null) throw new McpError(ErrorCode.InvalidParams, `Cannot cancel task ${taskId}: ${reason}`);
  }

  async listTasks(cursor?: string): Promise<{ tasks: McpTask[]; nextCursor?: string }> {
    this.#onUse();
    const offset = decodeCursor(cursor, "tasks/list");
    const page = this.#tasks.list({ limit: TASK_PAGE_SIZE + 1, offset });
    const tasks = page.slice(0, TASK_PAGE_SIZE).map((task) => toMcpTask(task, this.#tasks));
    return page.length > TASK_PAGE_SIZE ? { tasks, nextCursor: encodeCursor(offset + TASK_PAGE_SIZE) } : { tasks };
  }

  #settle(result: CallToolResult, status: "completed" | "failed", ttlMs: number, once: boolean): McpTask {
    const now = new Date().toISOString();
    const failure = result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
    const task: McpTask = {
      taskId: `launch_${randomBytes(8).toString("hex")}`,
      status,
      ...(status === "failed" ? { statusMessage: failure } : {}),
      createdAt: now,
      lastUpdatedAt: now,
      ttl: ttlMs,
    };
    this.#settled.set(task.taskId, { task, result, expiresAt: Date.now() + ttlMs, once });
    while (this.#settled.size > MAX_SETTLED) this.#settled.delete(this.#settled.keys().next().value!);
    return task;
  }

  #sweep(now = Date.now()): void {
    for (const [id, settled] of this.#settled) if (settled.expiresAt <= now) this.#settled.delete(id);
  }
}
