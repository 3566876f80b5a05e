import { createOpencodeClient, type OpencodeClient } from "@opencode-ai/sdk/v2";
import PQueue from "p-queue";
import type { Agent, Event, Message, Part, SessionStatus } from "@opencode-ai/sdk/v2";
import { log } from "../log.js";

export type { Event as OpencodeEvent, Message, Part, SessionStatus };
/** A model as opencode names it. */
export interface ModelRef {
  providerID: string;
  modelID: string;
}

export interface SessionMessage {
  info: Message;
  parts: Part[];
}

/** opencode could not be reached at all (connection refused, DNS, reset): the URL is in the message. */
export class OpencodeUnreachableError extends Error {
  override name = "OpencodeUnreachableError";
}

/** opencode answered, but with an error (404 for a missing session, 400 for a bad body, ...). */
export class OpencodeRequestError extends Error {
  override name = "OpencodeRequestError";
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export interface PromptInput {
  text: string;
  agent?: string;
  model?: ModelRef;
  /** Tools switched off for this prompt (name or wildcard -> false). */
  tools?: Record<string, boolean>;
  /** Store the message without starting a model turn. */
  noReply?: boolean;
}

export interface OpencodeOptions {
  url: string;
  /** The project the sessions work in. */
  directory: string;
  /** HTTP Basic credentials when the server has OPENCODE_SERVER_PASSWORD set. */
  auth?: { username: string; password: string };
  /** Requests (all but the event stream) sent at once; the rest wait their turn. Default REQUESTS_IN_FLIGHT. */
  requestsInFlight?: number;
}

/**
 * A launch burst (1,000 tasks each creating and prompting a session) would otherwise open one socket per
 * request, each with its buffers and parser state, and leave that memory to the process after the burst.
 * opencode answers one request at a time per core anyway, so a few in flight keep it as busy.
 */
export const REQUESTS_IN_FLIGHT = 16;

/** A session as a listing shows it. */
export interface SessionSummary {
  id: string;
  title: string;
  /** Epoch ms. */
  created: number;
}

export type ToastVariant = "info" | "success" | "warning" | "error";
export type PermissionReply = "once" | "always" | "reject";

/**
 * Everything this server asks of opencode: the one seam between the two. In production it is
 * `OpencodeHttpApi`; tests put a simulated opencode behind it. A call that cannot reach opencode rejects
 * with `OpencodeUnreachableError`; one opencode refuses rejects with `OpencodeRequestError` (its HTTP status).
 */
export interface OpencodeApi {
  /** Where opencode is; messages that name opencode name this. */
  readonly url: string;
  /** Resolves when opencode answers its health check. */
  health(): Promise<void>;
  /** The directory's agents, hidden ones (compaction, summary, title) included. */
  agents(): Promise<Agent[]>;
  /** Creates a session (a child of `parentID` when given) and returns its id. */
  createSession(input: { title: string; parentID?: string }): Promise<string>;
  /** The directory's sessions whose title contains `search`, created at or after `since` (epoch ms). */
  sessions(filter: { search: string; since?: number }): Promise<SessionSummary[]>;
  /** Whether opencode knows the session: false when it answers 404. */
  sessionExists(sessionID: string): Promise<boolean>;
  /** Sends a prompt without waiting for the turn (`prompt_async`); the turn shows in the event stream. */
  prompt(sessionID: string, input: PromptInput): Promise<void>;
  /** Stops the session's running turn, if it has one. */
  abort(sessionID: string): Promise<void>;
  deleteSession(sessionID: string): Promise<void>;
  /** Busy and retrying sessions only: opencode leaves idle ones out. */
  statuses(): Promise<Record<string, SessionStatus>>;
  /** The session's messages in order; only the last `limit` when given. */
  messages(sessionID: string, limit?: number): Promise<SessionMessage[]>;
  /** Answers a `permission.asked` request of a session. */
  replyPermission(requestID: string, reply: PermissionReply, message?: string): Promise<void>;
  /** A toast in an attached TUI; harmless when none is attached. */
  showToast(toast: { title: string; message: string; variant: ToastVariant }): Promise<void>;
  /**
   * The directory's event stream, until `signal` aborts. It reconnects by itself without replaying the gap,
   * reporting each loss to `onError`; every connection starts with `server.connected`, which is how callers
   * see a reconnect.
   */
  events(signal: AbortSignal, onError: (error: unknown) => void): Promise<AsyncGenerator<Event>>;
}

/** opencode over HTTP, through the v2 SDK: where requests get their errors' names. */
export class OpencodeHttpApi implements OpencodeApi {
  readonly url: string;
  readonly #sdk: OpencodeClient;
  readonly #requests: PQueue;

  constructor(options: OpencodeOptions) {
    this.url = options.url;
    this.#requests = new PQueue({ concurrency: options.requestsInFlight ?? REQUESTS_IN_FLIGHT });
    const headers: Record<string, string> = {};
    if (options.auth) {
      const { username, password } = options.auth;
      headers.Authorization = `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
    }
    this.#sdk = createOpencodeClient({ baseUrl: options.url, directory: options.directory, headers });
  }

  async health(): Promise<void> {
    await this.#call("check health", () => this.#sdk.global.health());
  }

  async agents(): Promise<Agent[]> {
    return this.#call("list agents", () => this.#sdk.app.agents());
  }

  async createSession(input: { title: string; parentID?: string }): Promise<string> {
    const session = await this.#call("create a session", () => this.#sdk.session.create(input));
    return session.id;
  }

  async sessions(filter: { search: string; since?: number }): Promise<SessionSummary[]> {
    const sessions = await this.#call("list sessions", () => this.#sdk.session.list({ search: filter.search, start: filter.since }));
    return sessions.map((s) => ({ id: s.id, title: s.title, created: s.time.created }));
  }

  async sessionExists(sessionID: string): Promise<boolean> {
    try {
      await this.#call("read a session", () => this.#sdk.session.get({ sessionID }));
      return true;
    } catch (error) {
      if (error instanceof OpencodeRequestError && error.status === 404) return false;
      throw error;
    }
  }

  async prompt(sessionID: string, input: PromptInput): Promise<void> {
    await this.#call("prompt a session", () =>
      this.#sdk.session.promptAsync({
        sessionID,
        agent: input.agent,
        model: input.model,
        tools: input.tools,
        noReply: input.noReply,
        parts: [{ type: "text", text: input.text }],
      }),
    );
  }

  async abort(sessionID: string): Promise<void> {
    await this.#call("abort a session", () => this.#sdk.session.abort({ sessionID }));
  }

  async deleteSession(sessionID: string): Promise<void> {
    await this.#call("delete a session", () => this.#sdk.session.delete({ sessionID }));
  }

  async statuses(): Promise<Record<string, SessionStatus>> {
    return this.#call("read session statuses", () => this.#sdk.session.status());
  }

  async messages(sessionID: string, limit?: number): Promise<SessionMessage[]> {
    return this.#call("read session messages", () => this.#sdk.session.messages({ sessionID, limit }));
  }

  async showToast(toast: { title: string; message: string; variant: ToastVariant }): Promise<void> {
    await this.#call("show a toast", () => this.#sdk.tui.showToast({ ...toast, duration: 5_000 }));
  }

  async replyPermission(requestID: string, reply: PermissionReply, message?: string): Promise<void> {
    await this.#call("answer a permission request", () => this.#sdk.permission.reply({ requestID, reply, message }));
  }

  async events(signal: AbortSignal, onError: (error: unknown) => void): Promise<AsyncGenerator<Event>> {
    const { stream } = await this.#sdk.event.subscribe(undefined, {
      signal,
      onSseError: onError,
      sseDefaultRetryDelay: 250,
      sseMaxRetryDelay: 5_000,
    });
    return stream as AsyncGenerator<Event>;
  }

  async #call<T>(what: string, request: () => Promise<{ data?: T; error?: unknown; response?: Response }>): Promise<T> {
    let outcome: { data?: T; error?: unknown; response?: Response };
    const started = Date.now();
    try {
      outcome = await this.#requests.add(request);
      log.debug("opencode request", { what, ms: Date.now() - started, status: outcome.response?.status });
    } catch (error) {
      throw new OpencodeUnreachableError(`opencode is unreachable at ${this.url} (could not ${what}): ${describe(error)}`);
    }
    if (!outcome.response) {
      // The SDK reports a failed fetch as an error without a response rather than throwing.
      throw new OpencodeUnreachableError(`opencode is unreachable at ${this.url} (could not ${what}): ${describe(outcome.error)}`);
    }
    const status = outcome.response.status;
    if (outcome.error !== undefined || status >= 400) {
      throw new OpencodeRequestError(
        `opencode at ${this.url} refused to ${what} (HTTP ${status}): ${describe(outcome.error)}`,
        status,
      );
    }
    return outcome.data as T;
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  if (error && typeof error === "object") {
    const data = (error as { data?: { message?: unknown } }).data;
    if (typeof data?.message === "string") return data.message;
    return JSON.stringify(error);
  }
  return String(error);
}
