import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { VERSION } from "../version.js";
import { McpTaskStore, TASK_POLL_INTERVAL_MS } from "./mcp-tasks.js";
import { CLAUDE_CHANNEL_CAPABILITY } from "./notifications.js";
import { OwnedTasks, type TaskAccess } from "./owned-tasks.js";
import type { TaskPushRouter } from "./push.js";
import { registerTaskResources } from "./resources.js";
import { McpSession } from "./session.js";
import { registerTools, type ToolOptions } from "./tools.js";

const INSTRUCTIONS = `Runs opencode agents on tasks in the background.
background_task launches a task and returns at once; background_output reads status, progress and the result
(block: true waits); background_cancel stops tasks. Completion is pushed (logging notifications, the
background-task://{task_id} resource, and a prompt into the parent opencode session when one is given), so do not poll.`;

const CHANNEL_INSTRUCTIONS = `
When a background task ends, a <channel> event arrives naming the task (task_id, status and agent as attributes)
with a preview of its result or its error; read the full output with background_output and that task_id.`;

/** What every connection's server shares. */
export interface ServerDeps extends ToolOptions {
  tasks: TaskAccess;
  push: TaskPushRouter;
  /** Act as a Claude Code channel: declare `experimental["claude/channel"]` and push a channel event when a task ends. */
  claudeChannel?: boolean;
}

/** Who is on the other end of one connection. */
export interface ClientIdentity {
  /** Whose tasks this connection sees: "local" on stdio, the token's owner over HTTP. */
  owner: string;
  /** The transport's session id once known (HTTP); the SDK keys the client's log level by it. */
  sessionId?: () => string | undefined;
}

/**
 * One MCP server instance for one connection (the SDK's server serves one transport), over the shared
 * task manager but limited to the client's own tasks. The caller connects it and attaches it to the
 * push router once the client is there.
 */
export function createMcpServer(deps: ServerDeps, client: ClientIdentity): McpSession {
  // `session` is only used once requests arrive, when it exists.
  const tasks: OwnedTasks = new OwnedTasks(deps.tasks, client.owner, (launch) => deps.push.launchFor(session, launch));
  // MCP Tasks: the SDK serves tasks/get, tasks/result, tasks/list and tasks/cancel from this store.
  const taskStore: McpTaskStore = new McpTaskStore(tasks, () => session.markUsesTasks());
  // Declare every capability up front: the SDK refuses to add any after connecting.
  const server: McpServer = new McpServer(
    { name: "background-agents-mcp", version: VERSION },
    {
      capabilities: {
        logging: {},
        tools: { listChanged: false },
        resources: { subscribe: true, listChanged: true },
        tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } },
        ...(deps.claudeChannel ? { experimental: { [CLAUDE_CHANNEL_CAPABILITY]: {} } } : {}),
      },
      instructions: deps.claudeChannel ? INSTRUCTIONS + CHANNEL_INSTRUCTIONS : INSTRUCTIONS,
      taskStore,
      defaultTaskPollInterval: TASK_POLL_INTERVAL_MS,
    },
  );
  const session: McpSession = new McpSession(server, client.owner, client.sessionId, { channel: deps.claudeChannel ?? false });
  registerTools(server, tasks, { parentPrompt: deps.parentPrompt });
  registerTaskResources(server, tasks);
  return session;
}
