import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { McpError, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { z } from "zod";
import { OpencodeRequestError, OpencodeUnreachableError } from "../opencode/client.js";
import { TaskInputError } from "../tasks/manager.js";
import { isTerminal, type Task } from "../tasks/task.js";
import { statusMessage, taskLine, taskReport } from "../tasks/task-text.js";
import { callerOf, detectionNote } from "./caller.js";
import { decodeCursor, encodeCursor } from "./cursor.js";
import { LAUNCH_ANSWER } from "./mcp-tasks.js";
import type { OwnedTasks } from "./owned-tasks.js";
import { progressHeartbeat } from "./progress.js";
import {
  BackgroundCancelInput,
  BackgroundCancelOutput,
  BackgroundOutputInput,
  BackgroundOutputOutput,
  BackgroundTaskInput,
  BackgroundTaskOutput,
  type TaskView,
  unknownParameters,
} from "./schemas.js";
import { toView } from "./task-view.js";

export interface ToolOptions {
  /** Whether a task with a parent session gets a prompt in that session when it ends. */
  parentPrompt: boolean;
}

function ok(text: string, structured: Record<string, unknown>): CallToolResult {
  return { content: [{ type: "text", text }], structuredContent: structured };
}

function fail(text: string): CallToolResult {
  return { content: [{ type: "text", text }], isError: true };
}

/** Turns expected failures into an `isError` result that says what was wrong; anything else is a bug and rethrown. */
function asToolError(error: unknown): CallToolResult {
  if (
    error instanceof TaskInputError ||
    error instanceof OpencodeUnreachableError ||
    error instanceof OpencodeRequestError ||
    error instanceof McpError
  ) {
    return fail(error.message);
  }
  throw error;
}

/** The three tools, over one owner's tasks: another owner's task_id is unknown here. */
export function registerTools(server: McpServer, tasks: OwnedTasks, options: ToolOptions): void {
  // Registered as a task tool (taskSupport "optional") so clients that speak MCP Tasks can run it as one;
  // see McpTaskStore for how a plain call still gets the launch answer at once.
  server.experimental.tasks.registerToolTask(
    "background_task",
    {
      title: "Launch a background agent task",
      description:
        "Start an opencode agent on a task in the background and return at once with a task id. " +
        "The task waits for a free slot of its agent if needed. Completion is pushed; use background_output to read results.",
      inputSchema: BackgroundTaskInput,
      outputSchema: BackgroundTaskOutput,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
      execution: { taskSupport: "optional" },
    },
    {
      // The SDK has parsed args with inputSchema; its task-handler typing only keeps a raw shape's type, not an object schema's.
      createTask: async (args, extra) => {
        const answer = await launchTask(server, tasks, options, args as BackgroundTaskArgs);
        return { task: await extra.taskStore.createTask({ ttl: extra.taskRequestedTtl, context: { [LAUNCH_ANSWER]: answer } }) };
      },
      // The SDK never calls these two (tasks/get and tasks/result read the task store); if it ever does, they agree with it.
      getTask: async (_args, extra) => extra.taskStore.getTask(extra.taskId),
      getTaskResult: async (_args, extra) => (await extra.taskStore.getTaskResult(extra.taskId)) as CallToolResult,
    },
  );

  server.registerTool(
    "background_output",
    {
      title: "Read background task status and results",
      description:
        "Status, progress and result of a background task (or, without task_id, of all tasks, newest first). " +
        "block: true waits until the task finishes or timeout_ms passes. full: true adds the transcript.",
      inputSchema: BackgroundOutputInput,
      outputSchema: BackgroundOutputOutput,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async (args, extra) => {
      const unknown = unknownParameters("background_output", BackgroundOutputInput, args);
      if (unknown) return fail(unknown);
      const { task_id, block, timeout_ms, full } = args;
      try {
        if (task_id === undefined) {
          // Called from an opencode session: that session's tasks and their descendants.
          const caller = await callerOf(server, tasks, "background_output", args);
          const offset = decodeCursor(args.cursor, "background_output");
          // One more than the page, to know whether another page follows.
          const listed =
            caller?.kind === "found"
              ? tasks.descendants(caller.sessionID).slice(offset, offset + args.limit + 1)
              : tasks.list({ limit: args.limit + 1, offset });
          const page = listed.slice(0, args.limit);
          const views = page.map((t) => toView(t, tasks));
          const next_cursor = listed.length > args.limit ? encodeCursor(offset + args.limit) : null;
          const lines = page.map((t, i) => `- ${taskLine(t, { queuePosition: views[i]!.queue_position })}`);
          const more = next_cursor ? `\nMore: call background_output with cursor "${next_cursor}".` : "";
          const text = views.length ? `${views.length} task(s), newest first:\n${lines.join("\n")}${more}` : "No tasks.";
          return ok(text, { tasks: views, next_cursor });
        }
        let task = tasks.get(task_id);
        if (!task) return fail(unknownTask(task_id));
        if (block && !isTerminal(task.status)) {
          const waited = task;
          const stop = progressHeartbeat(extra, () => waiting(tasks.get(task_id) ?? waited));
          try {
            task = (await tasks.waitForTerminal(task_id, timeout_ms, extra.signal)) ?? task;
          } finally {
            stop();
          }
        }
        const view: TaskView = toView(task, tasks);
        const sessionTranscript = full ? await tasks.transcript(task.id) : undefined;
        if (sessionTranscript) {
          view.messages = sessionTranscript.entries;
          view.messages_omitted = sessionTranscript.omitted;
        }
        const transcript = full ? (sessionTranscript ?? { entries: [], omitted: 0 }) : undefined;
        return ok(taskReport(task, { queuePosition: view.queue_position, transcript }), view);
      } catch (error) {
        return asToolError(error);
      }
    },
  );

  server.registerTool(
    "background_cancel",
    {
      title: "Cancel background tasks",
      description: "Cancel one task (task_id) or every queued and running task of yours (all: true).",
      inputSchema: BackgroundCancelInput,
      outputSchema: BackgroundCancelOutput,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: true },
    },
    async (args) => {
      const unknown = unknownParameters("background_cancel", BackgroundCancelInput, args);
      if (unknown) return fail(unknown);
      const { task_id, all } = args;
      if (task_id === undefined && !all) return fail('Give task_id (one task) or all: true (every unfinished task).');
      if (task_id !== undefined && !tasks.get(task_id)) return fail(unknownTask(task_id));
      // all: true from an opencode session cancels that session's tasks and their descendants.
      const caller = task_id === undefined ? await callerOf(server, tasks, "background_cancel", args) : undefined;
      const scope = caller?.kind === "found" ? tasks.descendants(caller.sessionID) : tasks.list();
      const ids = task_id !== undefined ? [task_id] : scope.filter((t) => !isTerminal(t.status)).map((t) => t.id);
      const cancelled: string[] = [];
      const skipped: Array<{ task_id: string; reason: string }> = [];
      await Promise.all(
        ids.map(async (id) => {
          const reason = await tasks.cancel(id);
          if (reason === null) cancelled.push(id);
          else skipped.push({ task_id: id, reason });
        }),
      );
      const text = [
        cancelled.length ? `Cancelled: ${cancelled.join(", ")}.` : "Nothing cancelled.",
        ...skipped.map((s) => `Skipped ${s.task_id}: ${s.reason}.`),
      ].join("\n");
      return ok(text, { cancelled, skipped });
    },
  );
}

type BackgroundTaskArgs = z.infer<typeof BackgroundTaskInput>;

/** Launches a task: the answer of background_task, an error result when the launch is refused. */
async function launchTask(server: McpServer, tasks: OwnedTasks, options: ToolOptions, args: BackgroundTaskArgs): Promise<CallToolResult> {
  const unknown = unknownParameters("background_task", BackgroundTaskInput, args);
  if (unknown) return fail(unknown);
  try {
    // opencode sends no session id: find the calling session, which becomes the parent. An explicit one wins.
    const caller = args.parent_session_id ? undefined : await callerOf(server, tasks, "background_task", args);
    const parent = caller?.kind === "found" ? caller.sessionID : args.parent_session_id;
    const task = await tasks.launch({ ...args, ...(parent ? { parent_session_id: parent } : {}) });
    const view = toView(task, tasks);
    const where = view.status === "queued" ? `queued (position ${view.queue_position})` : "running";
    const how =
      task.parent_session_id && options.parentPrompt
        ? `When it ends, session ${task.parent_session_id} will be prompted with the outcome: do not poll; carry on with other work.`
        : `Call background_output with task_id "${task.id}" and block: true when you need the result.`;
    return ok(`Launched ${task.id} on agent ${task.agent} (${where}). ${how}${detectionNote(caller)}`, {
      task_id: view.task_id,
      status: view.status,
      agent: view.agent,
      description: view.description,
      session_id: view.session_id,
      queue_position: view.queue_position,
    });
  } catch (error) {
    return asToolError(error);
  }
}

/** What a progress notification says while background_output waits for `task`. */
function waiting(task: Task): string {
  return `Waiting for task ${task.id} ("${task.description}"): ${statusMessage(task)}`;
}

function unknownTask(taskId: string): string {
  const shown = taskId.length > 80 ? `${taskId.slice(0, 80)}…` : taskId;
  return `Unknown task_id "${shown}". Call background_output without task_id to list the known tasks.`;
}
