import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { SubscribeRequestSchema, UnsubscribeRequestSchema, type Task as McpTask } from "@modelcontextprotocol/sdk/types.js";
import { CLAUDE_CHANNEL_METHOD, LOGGER, type ChannelEvent, type TaskLogMessage } from "./notifications.js";

/**
 * One client connection as the push side sees it: its MCP server instance, whose tasks it may see
 * (`owner`), the resources it subscribed, whether it gets channel events and task status, and the
 * server-initiated notifications it can be sent.
 * Sends go out on the connection's own channel (on HTTP, the session's GET stream), never tied to a
 * request; a closed connection is skipped rather than an error.
 */
export class McpSession {
  readonly server: McpServer;
  readonly owner: string;
  readonly #sessionId: () => string | undefined;
  readonly #subscriptions = new Set<string>();
  /** Claude Code channel events are sent: the server declared the `claude/channel` capability (opt-in). */
  readonly channel: boolean;
  #usesTasks = false;

  /**
   * `sessionId`: the transport's session id (HTTP), which the SDK keys the client's log level by.
   * `channel`: the server declared `experimental["claude/channel"]`.
   */
  constructor(server: McpServer, owner: string, sessionId: () => string | undefined = () => undefined, options: { channel?: boolean } = {}) {
    this.server = server;
    this.owner = owner;
    this.#sessionId = sessionId;
    this.channel = options.channel ?? false;
    // The SDK has no subscribe handlers of its own. Any URI is accepted: a subscription to a task the
    // client may not see simply never fires, which says nothing about whether that task exists.
    server.server.setRequestHandler(SubscribeRequestSchema, async (request) => {
      this.#subscriptions.add(request.params.uri);
      return {};
    });
    server.server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
      this.#subscriptions.delete(request.params.uri);
      return {};
    });
  }

  /** For diagnostics: the HTTP session id, or "stdio". */
  get label(): string {
    return this.#sessionId() ?? "stdio";
  }

  subscribed(uri: string): boolean {
    return this.#subscriptions.has(uri);
  }

  /** The client has shown it speaks MCP Tasks (a task-augmented call or a tasks/* request): it is sent task status changes. */
  get usesTasks(): boolean {
    return this.#usesTasks;
  }

  markUsesTasks(): void {
    this.#usesTasks = true;
  }

  /** `notifications/message`, filtered by the level this client set with `logging/setLevel`. */
  async log(message: TaskLogMessage): Promise<void> {
    if (!this.server.isConnected()) return;
    await this.server.sendLoggingMessage({ level: message.level, logger: LOGGER, data: message.data }, this.#sessionId());
  }

  async resourceUpdated(uri: string): Promise<void> {
    if (this.server.isConnected()) await this.server.server.sendResourceUpdated({ uri });
  }

  async resourceListChanged(): Promise<void> {
    if (this.server.isConnected()) await this.server.server.sendResourceListChanged();
  }

  /** `notifications/tasks/status` (MCP Tasks). */
  async taskStatus(task: McpTask): Promise<void> {
    if (this.server.isConnected()) await this.server.server.notification({ method: "notifications/tasks/status", params: task });
  }

  /** `notifications/claude/channel`: a `<channel>` event in a Claude Code session. */
  async channelEvent(event: ChannelEvent): Promise<void> {
    if (this.server.isConnected()) await this.server.server.notification({ method: CLAUDE_CHANNEL_METHOD, params: { content: event.content, meta: event.meta } });
  }
}
