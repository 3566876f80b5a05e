import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { SubscribeRequestSchema, UnsubscribeRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { log } from "../log.js";
import type { TaskChange, TaskManager } from "../tasks/manager.js";
import { toView } from "./task-view.js";

export const LOGGER = "background-agents";
export const taskUri = (taskId: string): string => `background-task://${taskId}`;

const STATUS_EVENTS = new Set<TaskChange["event"]>(["task.queued", "task.running", "task.completed", "task.error", "task.cancelled"]);

/**
 * Pushes task changes to one MCP connection: a logging notification on every status change, and
 * `resources/updated` for the tasks the client subscribed to. A failed push is logged and never
 * touches the task.
 */
export class McpNotifier {
  readonly #server: McpServer;
  readonly #manager: TaskManager;
  readonly #subscribed = new Set<string>();
  readonly #listener = (change: TaskChange): void => void this.#push(change);

  constructor(server: McpServer, manager: TaskManager) {
    this.#server = server;
    this.#manager = manager;
    server.server.setRequestHandler(SubscribeRequestSchema, async (request) => {
      this.#subscribed.add(request.params.uri);
      return {};
    });
    server.server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
      this.#subscribed.delete(request.params.uri);
      return {};
    });
    manager.on("change", this.#listener);
  }

  close(): void {
    this.#manager.off("change", this.#listener);
  }

  async #push({ event, task }: TaskChange): Promise<void> {
    try {
      if (STATUS_EVENTS.has(event)) {
        const view = toView(task, this.#manager);
        await this.#server.sendLoggingMessage({
          level: task.status === "error" ? "error" : "info",
          logger: LOGGER,
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
          },
        });
      }
      const uri = taskUri(task.id);
      if (this.#subscribed.has(uri) && this.#server.isConnected()) await this.#server.server.sendResourceUpdated({ uri });
    } catch (error) {
      log.warn("could not push a task change to the MCP client", { event, taskId: task.id, error: String(error) });
    }
  }
}
