import { ResourceTemplate, type McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { ListResourcesRequestSchema, McpError, type Resource } from "@modelcontextprotocol/sdk/types.js";
import type { Task } from "../tasks/task.js";
import { decodeCursor, encodeCursor } from "./cursor.js";
import { taskUri } from "./notifications.js";
import type { OwnedTasks } from "./owned-tasks.js";
import { toView } from "./task-view.js";

/** Tasks per resources/list page. */
export const RESOURCE_PAGE_SIZE = 100;

/** JSON-RPC "resource not found" (MCP spec). */
const RESOURCE_NOT_FOUND = -32002;

/**
 * Each of the owner's tasks as a resource, `background-task://{task_id}`: readable (the same view as
 * background_output) and subscribable; resources/list pages through them, newest first.
 */
export function registerTaskResources(server: McpServer, tasks: OwnedTasks): void {
  server.registerResource(
    "background-task",
    new ResourceTemplate("background-task://{task_id}", { list: undefined }),
    { title: "Background task", description: "A background task's status, progress and result (as background_output)", mimeType: "application/json" },
    async (uri, { task_id }) => {
      const id = Array.isArray(task_id) ? task_id[0] : task_id;
      const task = id ? tasks.get(id) : undefined;
      if (!task) throw new McpError(RESOURCE_NOT_FOUND, `Unknown task "${id}" in ${uri.href}`, { uri: uri.href });
      return { contents: [{ uri: uri.href, mimeType: "application/json", text: JSON.stringify(toView(task, tasks)) }] };
    },
  );
  // Replaces the SDK's resources/list, which cannot page: the cursor is an offset into the owner's tasks.
  server.server.setRequestHandler(ListResourcesRequestSchema, async (request) => {
    const offset = decodeCursor(request.params?.cursor, "resources/list");
    const page = tasks.list({ limit: RESOURCE_PAGE_SIZE + 1, offset });
    const resources = page.slice(0, RESOURCE_PAGE_SIZE).map(toResource);
    return page.length > RESOURCE_PAGE_SIZE ? { resources, nextCursor: encodeCursor(offset + RESOURCE_PAGE_SIZE) } : { resources };
  });
}

function toResource(task: Task): Resource {
  return { uri: taskUri(task.id), name: task.id, title: `${task.description} (${task.status})`, mimeType: "application/json" };
}
