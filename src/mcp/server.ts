import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { TaskManager } from "../tasks/manager.js";
import { McpNotifier, taskUri } from "./notifications.js";
import { toView } from "./task-view.js";
import { registerTools, type ToolOptions } from "./tools.js";
import { VERSION } from "../version.js";

const INSTRUCTIONS = `Runs opencode agents on tasks in the background.
background_task launches a task and returns at once; background_output reads status, progress and the result
(block: true waits); background_cancel stops tasks. Completion is pushed (logging notifications, the
background-task://{task_id} resource, and a prompt into the parent opencode session when one is given), so do not poll.`;

export interface BackgroundServer {
  server: McpServer;
  notifier: McpNotifier;
}

/** One MCP server instance (one per connection) over the shared task manager. */
export function createMcpServer(manager: TaskManager, options: ToolOptions): BackgroundServer {
  // Declare every capability up front: the SDK refuses to add any after connecting.
  const server = new McpServer(
    { name: "background-agents-mcp", version: VERSION },
    {
      capabilities: { logging: {}, tools: { listChanged: false }, resources: { subscribe: true, listChanged: true } },
      instructions: INSTRUCTIONS,
    },
  );
  registerTools(server, manager, options);
  server.registerResource(
    "background-task",
    new ResourceTemplate("background-task://{task_id}", {
      list: async () => ({
        resources: manager.list({ limit: 1_000 }).map((task) => ({
          uri: taskUri(task.id),
          name: task.id,
          title: `${task.description} (${task.status})`,
          mimeType: "application/json",
        })),
      }),
    }),
    { title: "Background task", description: "A background task's status, progress and result (as background_output)", mimeType: "application/json" },
    async (uri, { task_id }) => {
      const id = Array.isArray(task_id) ? task_id[0] : task_id;
      const task = id ? manager.get(id) : undefined;
      if (!task) throw new Error(`Unknown task "${id}" in ${uri.href}`);
      return { contents: [{ uri: uri.href, mimeType: "application/json", text: JSON.stringify(toView(task, manager)) }] };
    },
  );
  return { server, notifier: new McpNotifier(server, manager) };
}
