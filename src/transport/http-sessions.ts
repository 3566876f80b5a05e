import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { log } from "../log.js";
import type { TaskPushRouter } from "../mcp/push.js";
import type { ClientIdentity } from "../mcp/server.js";
import type { McpSession } from "../mcp/session.js";
import { BoundedEventStore, DEFAULT_EVENT_LIMITS, type EventStoreLimits } from "./event-store.js";

export interface SessionLimits {
  /** Sessions one owner may hold at once; past it, the owner's longest-idle session is ended. */
  maxPerOwner: number;
  /** A session with no request or stream open for this long is ended. */
  idleMs: number;
  events: EventStoreLimits;
}

export const DEFAULT_SESSION_LIMITS: SessionLimits = { maxPerOwner: 64, idleMs: 60 * 60_000, events: DEFAULT_EVENT_LIMITS };

/**
 * One MCP session over Streamable HTTP (`mcp-session-id`): its own SDK transport, event store and MCP
 * server instance, bound for life to the owner whose token opened it.
 */
export class HttpSession {
  readonly owner: string;
  readonly mcp: McpSession;
  readonly transport: StreamableHTTPServerTransport;
  readonly #events: BoundedEventStore;
  #open = 0;
  #lastActive = Date.now();

  constructor(owner: string, mcp: McpSession, transport: StreamableHTTPServerTransport, events: BoundedEventStore) {
    this.owner = owner;
    this.mcp = mcp;
    this.transport = transport;
    this.#events = events;
  }

  get id(): string | undefined {
    return this.transport.sessionId;
  }

  /** Nothing open (no request in flight, no SSE stream) since `since`. */
  idleSince(since: number): boolean {
    return this.#open === 0 && this.#lastActive <= since;
  }

  get lastActive(): number {
    return this.#lastActive;
  }

  async handle(req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    this.#open++;
    this.#lastActive = Date.now();
    res.once("close", () => {
      this.#open--;
      this.#lastActive = Date.now();
    });
    if (req.method === "GET") this.#openStream(req, res);
    await this.transport.handleRequest(req, res, body);
  }

  /**
   * A GET opens the session's notification stream. Without Last-Event-ID it would start empty, losing
   * what was sent while no stream was open; so it resumes from the first such notification instead.
   */
  #openStream(req: IncomingMessage, res: ServerResponse): void {
    const resumeFrom = req.headers["last-event-id"] === undefined ? this.#events.undeliveredResumeId() : undefined;
    if (resumeFrom !== undefined) {
      // The SDK reads headers from rawHeaders (through @hono/node-server); keep both views in step.
      req.headers["last-event-id"] = resumeFrom;
      req.rawHeaders.push("Last-Event-ID", resumeFrom);
    }
    this.#events.streamOpened();
    res.once("close", () => this.#events.streamClosed());
  }

  async close(): Promise<void> {
    await this.mcp.server.close().catch((error: unknown) => log.warn("closing an MCP session failed", { session: this.id, error: String(error) }));
  }
}

/** The live HTTP sessions by id: creates them on initialize, ends them on DELETE, idleness, or shutdown. */
export class SessionRegistry {
  readonly #sessions = new Map<string, HttpSession>();
  readonly #createServer: (client: ClientIdentity) => McpSession;
  readonly #push: TaskPushRouter;
  readonly #limits: SessionLimits;

  constructor(createServer: (client: ClientIdentity) => McpSession, push: TaskPushRouter, limits: SessionLimits = DEFAULT_SESSION_LIMITS) {
    this.#createServer = createServer;
    this.#push = push;
    this.#limits = limits;
  }

  get size(): number {
    return this.#sessions.size;
  }

  get(id: string): HttpSession | undefined {
    return this.#sessions.get(id);
  }

  /**
   * A new session for `owner`, connected but not yet registered: it is registered when its initialize
   * request succeeds (the SDK then assigns its id), and discarded by the caller if it never does.
   */
  async open(owner: string): Promise<HttpSession> {
    await this.#makeRoomFor(owner);
    const events = new BoundedEventStore(this.#limits.events);
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore: events,
      onsessioninitialized: (id) => {
        // Runs on the initialize request, after `session` below is set.
        this.#sessions.set(id, session);
        this.#push.attach(session.mcp);
        log.info("MCP session started", { session: id, owner });
      },
    });
    const mcp = this.#createServer({ owner, sessionId: () => transport.sessionId });
    const session = new HttpSession(owner, mcp, transport, events);
    mcp.server.server.onclose = () => {
      this.#push.detach(mcp);
      const id = transport.sessionId;
      if (id !== undefined && this.#sessions.get(id) === session) {
        this.#sessions.delete(id);
        log.info("MCP session ended", { session: id, owner });
      }
    };
    await mcp.server.connect(transport);
    return session;
  }

  /** Ends the sessions nothing has used for the idle limit. */
  async sweep(now = Date.now()): Promise<void> {
    const stale = [...this.#sessions.values()].filter((s) => s.idleSince(now - this.#limits.idleMs));
    for (const session of stale) log.info("ending an idle MCP session", { session: session.id, owner: session.owner });
    await Promise.all(stale.map((s) => s.close()));
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.#sessions.values()].map((s) => s.close()));
  }

  /** At the per-owner limit, ends the owner's longest-idle session (one with nothing open). */
  async #makeRoomFor(owner: string): Promise<void> {
    const owned = [...this.#sessions.values()].filter((s) => s.owner === owner);
    if (owned.length < this.#limits.maxPerOwner) return;
    const idle = owned.filter((s) => s.idleSince(Date.now())).sort((a, b) => a.lastActive - b.lastActive);
    const victim = idle[0];
    if (!victim) throw new TooManySessionsError(`owner "${owner}" already has ${owned.length} open sessions, all in use; end one (DELETE /mcp) first`);
    log.info("ending the oldest idle MCP session to make room", { session: victim.id, owner });
    await victim.close();
  }
}

export class TooManySessionsError extends Error {
  override name = "TooManySessionsError";
}
