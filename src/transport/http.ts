import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { log } from "../log.js";
import { TaskPushRouter } from "../mcp/push.js";
import { createMcpServer } from "../mcp/server.js";
import type { Runtime } from "../runtime.js";
import { LOCAL_OWNER } from "../tasks/manager.js";
import { BearerTokens, NoAuth, type Authenticator } from "./auth.js";
import { BodyError, MAX_BODY_BYTES, readJsonBody } from "./http-body.js";
import { DEFAULT_SESSION_LIMITS, SessionRegistry, TooManySessionsError, type SessionLimits } from "./http-sessions.js";
import { isLoopbackHost, type HttpSettings } from "./http-settings.js";
import { LoopbackHostGuard } from "./host-guard.js";

export const MCP_PATH = "/mcp";
export const HEALTH_PATH = "/healthz";
const REALM = "background-agents-mcp";
/** How long shutdown waits for open responses to finish before cutting the connections. */
const SHUTDOWN_GRACE_MS = 3_000;

export interface HttpOptions {
  maxBodyBytes?: number;
  sessions?: SessionLimits;
}

/** The running HTTP transport. */
export interface HttpTransport {
  /** e.g. http://127.0.0.1:3100/mcp */
  readonly url: string;
  /** Graceful stop: refuse new requests, end every session, close the listener. Tasks are not touched. */
  close(): Promise<void>;
}

/** The listener could not start (address in use, not available, no permission). */
export class HttpListenError extends Error {
  override name = "HttpListenError";
}

/**
 * Serves MCP over Streamable HTTP at /mcp, stateful: one session (and one MCP server instance) per
 * `mcp-session-id`, created by an initialize request and owned by the token that sent it. Every request
 * passes, in order: the DNS-rebinding guard (loopback binds: Host and Origin must be local, else 403),
 * routing (/healthz answers without auth; other paths 404), bearer auth (401), the body limits
 * (415/413/400), and the session lookup (unknown, ended or another owner's session: 404).
 */
export async function serveHttp(runtime: Runtime, settings: HttpSettings, options: HttpOptions = {}): Promise<HttpTransport> {
  const push = new TaskPushRouter(runtime.changes, runtime.tasks.manager);
  const deps = { tasks: runtime.tasks, push, parentPrompt: runtime.settings.parentPrompt, claudeChannel: runtime.settings.claudeChannel };
  const sessions = new SessionRegistry((client) => createMcpServer(deps, client), push, options.sessions ?? DEFAULT_SESSION_LIMITS);
  const handler = new McpHttpHandler({
    auth: Object.keys(settings.tokens).length ? new BearerTokens(settings.tokens) : new NoAuth(LOCAL_OWNER),
    guard: isLoopbackHost(settings.host) ? new LoopbackHostGuard(settings.host) : undefined,
    sessions,
    maxBodyBytes: options.maxBodyBytes ?? MAX_BODY_BYTES,
  });
  const server = createServer((req, res) => void handler.handle(req, res));
  await listen(server, settings.host, settings.port);
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}${MCP_PATH}`;
  const sweep = setInterval(() => void sessions.sweep(), 60_000);
  sweep.unref();
  log.info("serving MCP over Streamable HTTP", { url, auth: Object.keys(settings.tokens).length ? "bearer" : "none (loopback only)" });

  let closing: Promise<void> | undefined;
  return {
    url,
    close: () =>
      (closing ??= (async () => {
        handler.stopping = true;
        clearInterval(sweep);
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        await sessions.closeAll();
        push.close();
        server.closeIdleConnections();
        const cut = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
        await closed;
        clearTimeout(cut);
        log.info("HTTP transport stopped");
      })()),
  };
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      const why = error.code === "EADDRINUSE" ? "the address is already in use" : error.code === "EACCES" ? "permission denied" : error.message;
      reject(new HttpListenError(`cannot listen on ${host}:${port}: ${why}`));
    });
    server.listen(port, host, () => resolve());
  });
}

interface HandlerDeps {
  auth: Authenticator;
  guard: LoopbackHostGuard | undefined;
  sessions: SessionRegistry;
  maxBodyBytes: number;
}

/** Routes one HTTP request; see serveHttp for the order of the checks. */
class McpHttpHandler {
  stopping = false;
  readonly #deps: HandlerDeps;

  constructor(deps: HandlerDeps) {
    this.#deps = deps;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      await this.#route(req, res);
    } catch (error) {
      log.error("HTTP request failed", { method: req.method, url: req.url, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
      if (!res.headersSent) rpcError(res, 500, -32603, "Internal error");
      else res.destroy();
    }
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const refused = this.#deps.guard?.check(req.headers);
    if (refused) return rpcError(res, 403, -32000, `Forbidden: ${refused}`);
    if (this.stopping) return json(res, 503, { error: "The server is shutting down" }, { Connection: "close" });

    if (path === HEALTH_PATH) {
      if (req.method !== "GET" && req.method !== "HEAD") return json(res, 405, { error: "Use GET" }, { Allow: "GET, HEAD" });
      return json(res, 200, { status: "ok" });
    }
    if (path !== MCP_PATH) return json(res, 404, { error: `Not found: ${path}. MCP is served at ${MCP_PATH}; health at ${HEALTH_PATH}` });
    if (req.method !== "POST" && req.method !== "GET" && req.method !== "DELETE") {
      return rpcError(res, 405, -32000, `Method not allowed: ${req.method}; ${MCP_PATH} takes POST, GET and DELETE`, { Allow: "POST, GET, DELETE" });
    }

    const who = this.#deps.auth.authenticate(req.headers.authorization);
    if (!who.ok) {
      const challenge = who.error === "missing" ? `Bearer realm="${REALM}"` : `Bearer realm="${REALM}", error="${who.error}", error_description="${who.description}"`;
      return json(res, 401, { error: who.error === "missing" ? "unauthorized" : who.error, error_description: who.description }, { "WWW-Authenticate": challenge });
    }

    let body: unknown;
    if (req.method === "POST") {
      try {
        body = await readJsonBody(req, this.#deps.maxBodyBytes);
      } catch (error) {
        if (!(error instanceof BodyError)) throw error;
        rpcError(res, error.status, error.code, error.message, error.status === 413 ? { Connection: "close" } : {});
        if (error.status === 413) res.once("finish", () => req.destroy());
        return;
      }
    }

    const sessionId = req.headers["mcp-session-id"];
    if (typeof sessionId === "string") {
      const session = this.#deps.sessions.get(sessionId);
      // Another owner's session is as unknown as an ended one.
      if (!session || session.owner !== who.owner) {
        return rpcError(res, 404, -32001, "Session not found: it has ended or never existed. Start a new session with an initialize request.");
      }
      return session.handle(req, res, body);
    }
    if (req.method === "POST" && isInitialize(body)) {
      let session;
      try {
        session = await this.#deps.sessions.open(who.owner);
      } catch (error) {
        if (error instanceof TooManySessionsError) return rpcError(res, 429, -32000, `Too many sessions: ${error.message}`);
        throw error;
      }
      await session.handle(req, res, body);
      // An initialize the SDK refused (e.g. an unsupported protocol version) leaves a session without an id.
      if (session.id === undefined) await session.close();
      return;
    }
    return rpcError(res, 400, -32000, "Bad Request: Mcp-Session-Id header is required; start a session with an initialize request");
  }
}

function isInitialize(body: unknown): boolean {
  return Array.isArray(body) ? body.some((message) => isInitializeRequest(message)) : isInitializeRequest(body);
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "Content-Type": "application/json", ...headers }).end(JSON.stringify(body));
}

function rpcError(res: ServerResponse, status: number, code: number, message: string, headers: Record<string, string> = {}): void {
  json(res, status, { jsonrpc: "2.0", error: { code, message }, id: null }, headers);
}
