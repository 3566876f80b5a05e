import { AsyncLocalStorage } from "node:async_hooks";
import { log } from "../log.js";
import type { TaskChange, TaskChanges } from "../tasks/records.js";
import { isTerminal } from "../tasks/task.js";
import { toMcpTask } from "./mcp-tasks.js";
import { channelEvent, taskLogMessage, taskUri } from "./notifications.js";
import type { McpSession } from "./session.js";
import type { QueuePositions } from "./task-view.js";

/**
 * Routes task changes to the connected sessions. Nobody hears about another owner's task. Within the
 * owner's sessions:
 * - a new task: `notifications/resources/list_changed` to every one of them (their resources/list grew);
 * - a status change: `notifications/message` to the session that launched the task, or, once that
 *   session has gone (or for a task launched before this process started), to all of them, so a client
 *   that reconnects with a new session still hears how its tasks end; plus every session that subscribed
 *   the task's resource;
 * - any change: `notifications/resources/updated` to the sessions that subscribed the task's resource;
 * - end: `notifications/tasks/status` (MCP Tasks) to the same sessions as the log message (launcher,
 *   else all), among those that speak MCP Tasks; and, when the server is a Claude Code channel
 *   (`--claude-channel`), `notifications/claude/channel` to the same sessions.
 * A failed push is logged and never touches the task.
 */
export class TaskPushRouter {
  readonly #changes: TaskChanges;
  readonly #queue: QueuePositions;
  readonly #sessions = new Set<McpSession>();
  /** Which session launched each unfinished task this process has seen launched. */
  readonly #launchedBy = new Map<string, McpSession>();
  /** The session a `launch` call runs for: the new task is announced from inside the call. */
  readonly #launching = new AsyncLocalStorage<McpSession>();
  readonly #listener = (change: TaskChange): void => this.#route(change);

  /** `changes`: the task records' announcements; `queue`: where queued tasks stand (the task manager). */
  constructor(changes: TaskChanges, queue: QueuePositions) {
    this.#changes = changes;
    this.#queue = queue;
    changes.on("change", this.#listener);
  }

  attach(session: McpSession): void {
    this.#sessions.add(session);
  }

  detach(session: McpSession): void {
    this.#sessions.delete(session);
    for (const [taskId, launcher] of this.#launchedBy) if (launcher === session) this.#launchedBy.delete(taskId);
  }

  /** Runs `launch` on behalf of `session`, which then counts as the launcher of the task it creates. */
  launchFor<T>(session: McpSession, launch: () => Promise<T>): Promise<T> {
    return this.#launching.run(session, launch);
  }

  close(): void {
    this.#changes.off("change", this.#listener);
    this.#sessions.clear();
    this.#launchedBy.clear();
  }

  #route(change: TaskChange): void {
    const { event, task } = change;
    if (event === "task.queued") {
      const launcher = this.#launching.getStore();
      if (launcher && launcher.owner === task.owner && this.#sessions.has(launcher)) this.#launchedBy.set(task.id, launcher);
    }
    const owned = [...this.#sessions].filter((session) => session.owner === task.owner);
    const uri = taskUri(task.id);

    if (event === "task.queued") for (const session of owned) this.#send(session, change, () => session.resourceListChanged());

    const launcher = this.#launchedBy.get(task.id);
    // The launching session, or (once it has gone, or for a task from before this process) all the owner's.
    const told = launcher === undefined ? owned : owned.filter((session) => session === launcher);
    const message = taskLogMessage(change, this.#queue);
    if (message) {
      for (const session of owned) {
        if (told.includes(session) || session.subscribed(uri)) this.#send(session, change, () => session.log(message));
      }
    }

    for (const session of owned) if (session.subscribed(uri)) this.#send(session, change, () => session.resourceUpdated(uri));

    // The task ended. As an MCP task it was "working" until now (queued and running are both "working"),
    // so this is its one status change after the CreateTaskResult.
    if (event === `task.${task.status}` && isTerminal(task.status)) {
      const status = toMcpTask(task, this.#queue);
      for (const session of told) if (session.usesTasks) this.#send(session, change, () => session.taskStatus(status));
      const channel = channelEvent(task);
      for (const session of told) if (session.channel) this.#send(session, change, () => session.channelEvent(channel));
    }

    if (isTerminal(task.status)) this.#launchedBy.delete(task.id);
  }

  #send(session: McpSession, { event, task }: TaskChange, push: () => Promise<void>): void {
    push().catch((error: unknown) => {
      log.warn("could not push a task change to an MCP client", { event, taskId: task.id, session: session.label, error: String(error) });
    });
  }
}
