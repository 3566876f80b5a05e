import { createOpencodeClient, type OpencodeClient } from "@opencode-ai/sdk/v2";
import type { Agent, Event, Message, Part, SessionStatus, Todo } from "@opencode-ai/sdk/v2";
import type { ModelRef } from "../tasks/task.js";
import { log } from "../log.js";

export type { Event as OpencodeEvent, Message, Part, SessionStatus };
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
}

/**
 * The one seam between this server and opencode: everything the server asks of opencode. Tests put a
 * simulated opencode behind it; in production it is `OpencodeHttpApi`.
 */
export type OpencodeApi = Pick<
  OpencodeHttpApi,
  | "url"
  | "directory"
  | "requestCount"
  | "health"
  | "agents"
  | "createSession"
  | "sessionExists"
  | "prompt"
  | "abort"
  | "deleteSession"
  | "statuses"
  | "messages"
  | "todos"
  | "replyPermission"
  | "showToast"
  | "events"
>;

/**
 * opencode over HTTP, through the v2 SDK. Every call goes through here, so it is also where requests are
 * counted (`requestCount`) and where errors get their names.
 */
export class OpencodeHttpApi {
  readonly url: string;
  readonly directory: string;
  /** HTTP requests sent so far, the event stream included. */
  requestCount = 0;
  readonly #sdk: OpencodeClient;

  constructor(options: OpencodeOptions) {
    this.url = options.url;
    this.directory = options.directory;
    const headers: Record<string, string> = {};
    if (options.auth) {
      const { username, password } = options.auth;
      headers.Authorization = `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
    }
    const counting: typeof fetch = (input, init) => {
      this.requestCount++;
      return fetch(input, init);
    };
    this.#sdk = createOpencodeClient({ baseUrl: options.url, directory: options.directory, headers, fetch: counting });
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

  /** The session, or null when opencode does not know it. */
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

  /** Busy and retrying sessions only: opencode leaves idle ones out. */
  async statuses(): Promise<Record<string, SessionStatus>> {
    return this.#call("read session statuses", () => this.#sdk.session.status());
  }

  async messages(sessionID: string, limit?: number): Promise<SessionMessage[]> {
    return this.#call("read session messages", () => this.#sdk.session.messages({ sessionID, limit }));
  }

  async todos(sessionID: string): Promise<Todo[]> {
    return this.#call("read session todos", () => this.#sdk.session.todo({ sessionID }));
  }

  /** A toast in an attached TUI; harmless (opencode answers true) when none is attached. */
  async showToast(toast: { title: string; message: string; variant: "info" | "success" | "warning" | "error" }): Promise<void> {
    await this.#call("show a toast", () => this.#sdk.tui.showToast({ ...toast, duration: 5_000 }));
  }

  /** Answers a `permission.asked` request of a session. */
  async replyPermission(requestID: string, reply: "once" | "always" | "reject", message?: string): Promise<void> {
    await this.#call("answer a permission request", () => this.#sdk.permission.reply({ requestID, reply, message }));
  }

  /**
   * The directory's event stream. The SDK reconnects by itself (without replaying the gap); every
   * connection starts with a `server.connected` event, which is how callers see a reconnect.
   */
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
      outcome = await request();
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
