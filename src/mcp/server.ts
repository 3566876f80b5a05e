import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { TaskManager } from "../tasks/manager.js";
import { VERSION } from "../version.js";
import { OwnedTasks } from "./owned-tasks.js";
import type { TaskPushRouter } from "./push.js";
import { registerTaskResources } from "./resources.js";
import { McpSession } from "./session.js";
import { registerTools, type ToolOptions } from "./tools.js";

const INSTRUCTIONS = `Runs opencode agents on tasks in the background.
background_task launches a task and returns at once; background_output reads status, progress and the result
(block: true waits); background_cancel stops tasks. Completion is pushed (logging notifications, the
background-task://{task_id} resource, and a prompt into the parent opencode session when one is given), so do not poll.`;

/** What every connection's server shares. */
export interface ServerDeps extends ToolOptions {
  manager: TaskManager;
  push: TaskPushRouter;
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
  // Declare every capability up front: the SDK refuses to add any after connecting.
  const server = new McpServer(
    { name: "background-agents-mcp", version: VERSION },
    {
      capabilities: { logging: {}, tools: { listChanged: false }, resources: { subscribe: true, listChanged: true } },
      instructions: INSTRUCTIONS,
    },
  );
  const session = new McpSession(server, client.owner, client.sessionId);
  const tasks = new OwnedTasks(deps.manager, client.owner, (launch) => deps.push.launchFor(session, launch));
  registerTools(server, tasks, { parentPrompt: deps.parentPrompt });
  registerTaskResources(server, tasks);
  return session;
}
