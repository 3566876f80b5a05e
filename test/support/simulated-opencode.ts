/**
 * A deterministic, in-memory opencode behind the `OpencodeApi` seam, for property-based tests.
 *
 * It behaves like opencode 1.18 as described in /work/shared/reference/opencode-server.md (§1, §4, §5):
 * - `prompt` answers like the 204 of `prompt_async`; the run starts after the answer (or, with
 *   `busyDelayMs`, only later: the status map stays `{}` meanwhile). An agent opencode does not know
 *   gives two `session.error UnknownError` events and nothing else: no message, no status, never idle.
 * - `statuses()` lists busy and retrying sessions only. Deleting a busy session stops its run but leaves
 *   a stale `busy` in the map until `abort` is called on the deleted id.
 * - `abort` always succeeds; on a run it emits `session.error MessageAbortedError` and idle twice, and the
 *   assistant message gets the error. During a retry back-off there is no `session.error`.
 * - The event stream starts every connection with `server.connected` and sends `server.heartbeat` every 10 s;
 *   while it is down the consumer hears of a failed retry every 5 s (the SDK's `onSseError`); events
 *   emitted while it is down are lost (a reconnect does not replay them).
 *
 * Nothing happens on its own: the test drives runs with `finish`, `fail`, `toolCall`, ... and reads what
 * reached the model (`reachedModel`, `maxRunning`). Optional latency (in event-loop turns, from a seeded
 * PRNG) lets concurrent calls interleave differently per seed. `settle()` waits until nothing is pending.
 */
import type {
  Agent,
  AssistantMessage,
  Event,
  Part,
  Session,
  SessionStatus,
  TextPart,
  Todo,
  ToolPart,
  ToolState,
  UserMessage,
} from "@opencode-ai/sdk/v2";
import {
  OpencodeRequestError,
  OpencodeUnreachableError,
  type OpencodeApi,
  type PermissionReply,
  type PromptInput,
  type SessionMessage,
  type SessionSummary,
  type ToastVariant,
} from "../../src/opencode/client.js";

/** opencode's keep-alive on a connected stream (the SDK's Event union does not list it). */
const HEARTBEAT = { type: "server.heartbeat", properties: {} } as unknown as Event;
const HEARTBEAT_MS = 10_000;
/** The longest the SDK waits between retries of a stream it lost (OpencodeHttpApi's sseMaxRetryDelay). */
const SDK_RETRY_MS = 5_000;

type SessionError = NonNullable<Extract<Event, { type: "session.error" }>["properties"]["error"]>;

export interface SimulatedOpencodeOptions {
  url?: string;
  directory?: string;
  /** Visible agents (default: opencode's built-ins build, plan, general, explore). */
  agents?: string[];
  /** Seeds the PRNG behind latency and duplicate events. */
  seed?: number;
  /** Each call waits 0..latency event-loop turns before and after its effect (default 0). */
  latency?: number;
  /** ms (timers, so fake timers drive it) between a prompt's 204 and the run showing as busy; 0 = next turn. */
  busyDelayMs?: number;
  /** Every run finishes by itself this many event-loop turns after it starts (for fuzzing through MCP). */
  autoFinishTurns?: number;
  /** Chance (0..1) that an idle is announced twice, as opencode often does (default 0.5). */
  duplicateIdleChance?: number;
}

/** How the event stream goes down: the SDK reconnecting inside the same iterator, a clean end, or a throw. */
export type DisconnectMode = "sdk" | "end" | "throw";

interface Run {
  agent: string;
  phase: "pending" | "busy" | "retry";
  retry?: { attempt: number; message: string; next: number };
  userMessageID: string;
  /** The assistant message of the current step (null before the first step). */
  assistant: SessionMessage | null;
  /** Prompts that arrived while the run was busy: the final step answers them too. */
  queued: number;
  permission: string | null;
  takeUpTimer?: ReturnType<typeof setTimeout>;
}

interface SimSession {
  info: Session;
  messages: SessionMessage[];
  todos: Todo[];
  run: Run | null;
  /** Events emitted for this session (for replaying late duplicates). */
  history: Event[];
}

interface Connection {
  queue: Event[];
  wake: (() => void) | null;
  lost: boolean;
  /** The consumer's loss report: called the moment the connection is lost (a closed socket is noticed at once). */
  onError: (error: unknown) => void;
}

export interface PromptRecord {
  sessionID: string;
  title: string;
  agent: string;
  text: string;
  noReply: boolean;
  /** The agent was unknown to opencode: the prompt errored and never ran. */
  rejected: boolean;
}

export interface ActiveRun {
  sessionID: string;
  title: string;
  agent: string;
  phase: Run["phase"];
}

const BUILT_IN_AGENTS = ["build", "plan", "general", "explore"];
const HIDDEN_AGENTS = ["compaction", "summary", "title"];
const ABORTED: SessionError = { name: "MessageAbortedError", data: { message: "Aborted" } };
const REJECTED_TOOL = "The user rejected permission to use this specific tool call.";

export class SimulatedOpencode implements OpencodeApi {
  readonly url: string;
  readonly directory: string;

  /** Runs that started (reached the model), per agent. */
  readonly reachedModel = new Map<string, number>();
  /** Most runs of one agent in progress at the same time, ever. */
  readonly maxRunning = new Map<string, number>();
  readonly prompts: PromptRecord[] = [];
  /** Sessions whose run was aborted during a retry back-off (no session.error, no assistant error). */
  readonly abortedInBackoff = new Set<string>();
  /** How each session's runs ended, in order: an answer, a provider failure, or an abort. */
  readonly runEnds = new Map<string, Array<{ kind: "answer" | "failure" | "abort"; text: string }>>();
  /** The texts each session's runs finished with, in order. */
  readonly answers = new Map<string, string[]>();
  readonly toasts: Array<{ title: string; message: string; variant: string }> = [];
  readonly permissionReplies: Array<{ requestID: string; reply: string; message?: string }> = [];
  /** Titles of every session ever created (deleted ones included), in creation order. */
  readonly createdTitles: string[] = [];
  /** Events lost because the stream was down or dropping. */
  droppedEvents = 0;
  /** Consulted when a run is about to reach the model; false drops it (as if aborted before it started). */
  runGate: ((sessionID: string) => boolean) | null = null;
  /** Bumped on every call, effect and delivered event: `settle()` waits for it to stop moving. */
  activity = 0;

  readonly #sessions = new Map<string, SimSession>();
  /** Deleted sessions that were busy: opencode keeps reporting them busy until aborted. */
  readonly #staleBusy = new Set<string>();
  readonly #running = new Map<string, number>();
  readonly #agents: Agent[];
  readonly #connections = new Set<Connection>();
  readonly #waitingForStream = new Set<() => void>();
  readonly #permissions = new Map<string, string>();
  readonly #opts: Required<Omit<SimulatedOpencodeOptions, "url" | "directory" | "agents" | "seed">>;
  readonly #random: () => number;
  #ids = 0;
  #streamUp = true;
  #unreachable = false;
  #dropping = false;
  #disconnectMode: DisconnectMode = "sdk";
  #pending = 0;

  constructor(options: SimulatedOpencodeOptions = {}) {
    this.url = options.url ?? "http://127.0.0.1:4096";
    this.directory = options.directory ?? "/work/project";
    this.#agents = [
      ...(options.agents ?? BUILT_IN_AGENTS).map((name) => agent(name, false)),
      ...HIDDEN_AGENTS.map((name) => agent(name, true)),
    ];
    this.#random = mulberry32(options.seed ?? 1);
    this.#opts = {
      latency: options.latency ?? 0,
      busyDelayMs: options.busyDelayMs ?? 0,
      autoFinishTurns: options.autoFinishTurns ?? 0,
      duplicateIdleChance: options.duplicateIdleChance ?? 0.5,
    };
  }

  // ---- OpencodeApi --------------------------------------------------------------------------------

  health(): Promise<void> {
    return this.#call("check health", () => undefined);
  }

  agents(): Promise<Agent[]> {
    return this.#call("list agents", () => structuredClone(this.#agents));
  }

  createSession(input: { title: string; parentID?: string }): Promise<string> {
    return this.#call("create a session", () => {
      const now = Date.now();
      const id = this.#id("ses");
      const info: Session = {
        id,
        slug: `sim-${this.#ids}`,
        projectID: "global",
        directory: this.directory,
        title: input.title,
        version: "1.18.33",
        time: { created: now, updated: now },
        ...(input.parentID ? { parentID: input.parentID } : {}),
      };
      this.#sessions.set(id, { info, messages: [], todos: [], run: null, history: [] });
      this.createdTitles.push(input.title);
      this.#emit({ id: this.#id("evt"), type: "session.created", properties: { sessionID: id, info: structuredClone(info) } });
      this.#emit({ id: this.#id("evt"), type: "session.updated", properties: { sessionID: id, info: structuredClone(info) } });
      return id;
    });
  }

  sessions(filter: { search: string; since?: number }): Promise<SessionSummary[]> {
    return this.#call("list sessions", () =>
      [...this.#sessions.values()]
        .map(({ info }) => ({ id: info.id, title: info.title, created: info.time.created }))
        .filter((s) => s.title.includes(filter.search) && s.created >= (filter.since ?? 0))
        .reverse(),
    );
  }

  sessionExists(sessionID: string): Promise<boolean> {
    return this.#call("read a session", () => this.#sessions.has(sessionID));
  }

  prompt(sessionID: string, input: PromptInput): Promise<void> {
    return this.#call("prompt a session", () => {
      const session = this.#live(sessionID, "prompt a session");
      const agentName = input.agent ?? "build";
      const known = this.#agents.some((a) => a.name === agentName);
      this.prompts.push({
        sessionID,
        title: session.info.title,
        agent: agentName,
        text: input.text,
        noReply: input.noReply ?? false,
        rejected: !known,
      });
      if (!known) {
        // 204 first; ~1 ms later two errors, and nothing else ever (no message, no status, no idle).
        this.#later(() => {
          const available = this.#agents.filter((a) => !a.hidden).map((a) => a.name).join(", ");
          const message = `Agent not found: "${agentName}". Available agents: ${available}`;
          this.#emitSession(sessionID, sessionErrorEvent(this.#id("evt"), sessionID, { name: "UnknownError", data: { message } }));
          this.#emitSession(
            sessionID,
            sessionErrorEvent(this.#id("evt"), sessionID, { name: "UnknownError", data: { message: `Error: ${message}\n    at prompt (src/session/prompt.ts:1:1)` } }),
          );
        });
        return;
      }
      const user: UserMessage = {
        id: this.#id("msg"),
        sessionID,
        role: "user",
        time: { created: Date.now() },
        agent: agentName,
        model: input.model ?? { providerID: "sim", modelID: "sim-1" },
        ...(input.tools ? { tools: input.tools } : {}),
      };
      const text = this.#textPart(sessionID, user.id, input.text);
      session.messages.push({ info: user, parts: [text] });
      this.#emitSession(sessionID, { id: this.#id("evt"), type: "message.updated", properties: { sessionID, info: structuredClone(user) } });
      this.#emitSession(sessionID, partEvent(this.#id("evt"), text));
      if (input.noReply) return;
      if (session.run) {
        // A prompt into a busy session is queued: one extra step answers it, with no idle in between.
        session.run.queued++;
        return;
      }
      const run: Run = { agent: agentName, phase: "pending", userMessageID: user.id, assistant: null, queued: 0, permission: null };
      session.run = run;
      if (this.#opts.busyDelayMs > 0) {
        run.takeUpTimer = setTimeout(() => this.#takeUp(session, run), this.#opts.busyDelayMs);
      } else {
        this.#later(() => this.#takeUp(session, run));
      }
    });
  }

  abort(sessionID: string): Promise<void> {
    return this.#call("abort a session", () => {
      // Always `true`, even for idle or unknown ids; on a deleted id it clears the stale busy status.
      this.#staleBusy.delete(sessionID);
      const session = this.#sessions.get(sessionID);
      if (!session?.run) return;
      this.#abortRun(session);
    });
  }

  deleteSession(sessionID: string): Promise<void> {
    return this.#call("delete a session", () => {
      this.#live(sessionID, "delete a session");
      this.#delete(sessionID);
    });
  }

  statuses(): Promise<Record<string, SessionStatus>> {
    return this.#call("read session statuses", () => {
      const map: Record<string, SessionStatus> = {};
      for (const [id, session] of this.#sessions) {
        const run = session.run;
        if (!run || run.phase === "pending") continue;
        map[id] = run.phase === "retry" && run.retry ? { type: "retry", ...run.retry } : { type: "busy" };
      }
      for (const id of this.#staleBusy) map[id] = { type: "busy" };
      return map;
    });
  }

  messages(sessionID: string, limit?: number): Promise<SessionMessage[]> {
    return this.#call("read session messages", () => {
      const messages = this.#live(sessionID, "read session messages").messages;
      return structuredClone(limit !== undefined && limit > 0 ? messages.slice(-limit) : messages);
    });
  }

  replyPermission(requestID: string, reply: PermissionReply, message?: string): Promise<void> {
    return this.#call("answer a permission request", () => {
      const sessionID = this.#permissions.get(requestID);
      if (sessionID === undefined) {
        throw new OpencodeRequestError(
          `opencode at ${this.url} refused to answer a permission request (HTTP 404): Permission request not found: ${requestID}`,
          404,
        );
      }
      this.#permissions.delete(requestID);
      this.permissionReplies.push({ requestID, reply, ...(message === undefined ? {} : { message }) });
      this.#emitSession(sessionID, { id: this.#id("evt"), type: "permission.replied", properties: { sessionID, requestID, reply } });
      const session = this.#sessions.get(sessionID);
      const run = session?.run;
      if (!session || !run || run.permission !== requestID) return;
      run.permission = null;
      if (reply !== "reject") return;
      // The tool fails and the loop stops: the step ends on "tool-calls" and the session goes idle.
      const step = this.#step(session, run);
      const tool = step.parts.find((p): p is ToolPart => p.type === "tool" && p.state.status === "running");
      if (tool) {
        tool.state = { status: "error", input: tool.state.input, error: REJECTED_TOOL, time: { start: Date.now(), end: Date.now() } };
        this.#emitSession(sessionID, partEvent(this.#id("evt"), tool));
      }
      this.#completeStep(session, step, "tool-calls");
      this.#endRun(session);
    });
  }

  /** `tui.showToast`: opencode answers true even with no TUI attached. */
  showToast(toast: { title: string; message: string; variant: ToastVariant }): Promise<void> {
    return this.#call("show a toast", () => void this.toasts.push({ ...toast }));
  }

  async events(signal: AbortSignal, onError: (error: unknown) => void): Promise<AsyncGenerator<Event>> {
    this.activity++;
    return this.#stream(signal, onError);
  }

  // ---- controls -----------------------------------------------------------------------------------

  /** The run answers `text` and ends: the last assistant message is completed with `finish: "stop"`. */
  finish(sessionID: string, text = "done"): boolean {
    const session = this.#sessions.get(sessionID);
    const run = session?.run;
    if (!session || !run) return false;
    if (run.phase === "pending") this.#takeUp(session, run);
    this.#resolvePermission(run);
    run.phase = "busy";
    this.answers.set(sessionID, [...(this.answers.get(sessionID) ?? []), text]);
    this.#recordEnd(sessionID, "answer", text);
    for (let answered = 0; answered <= run.queued; answered++) {
      const step = this.#step(session, run);
      const part = this.#textPart(sessionID, step.info.id, "");
      step.parts.push(part);
      this.#emitSession(sessionID, partEvent(this.#id("evt"), part));
      this.#emitSession(sessionID, {
        id: this.#id("evt"),
        type: "message.part.delta",
        properties: { sessionID, messageID: step.info.id, partID: part.id, field: "text", delta: text },
      });
      part.text = text;
      part.time = { start: Date.now(), end: Date.now() };
      this.#emitSession(sessionID, partEvent(this.#id("evt"), part));
      this.#completeStep(session, step, "stop");
    }
    this.#endRun(session);
    return true;
  }

  /** The provider fails for good: `session.error APIError`, the assistant message gets the error, idle. */
  fail(sessionID: string, message = "Bad Request: simulated provider failure", statusCode = 400): boolean {
    const session = this.#sessions.get(sessionID);
    const run = session?.run;
    if (!session || !run) return false;
    if (run.phase === "pending") this.#takeUp(session, run);
    this.#resolvePermission(run);
    const error: SessionError = {
      name: "APIError",
      data: { message, statusCode, isRetryable: statusCode >= 500, responseBody: JSON.stringify({ error: { message } }), metadata: { url: "http://127.0.0.1/v1/chat/completions" } },
    };
    this.#emitSession(sessionID, sessionErrorEvent(this.#id("evt"), sessionID, error));
    this.#recordEnd(sessionID, "failure", message);
    const step = this.#step(session, run);
    const info = step.info as AssistantMessage;
    info.error = error;
    info.time.completed = Date.now();
    this.#emitSession(sessionID, { id: this.#id("evt"), type: "message.updated", properties: { sessionID, info: structuredClone(info) } });
    this.#endRun(session);
    return true;
  }

  /** One tool round: the part goes pending -> running -> completed, the step ends on "tool-calls", a new step starts. */
  toolCall(sessionID: string, callID = this.#id("call"), tool = "bash", input: Record<string, unknown> = { command: "ls" }): boolean {
    const session = this.#sessions.get(sessionID);
    const run = session?.run;
    if (!session || !run || run.permission) return false;
    if (run.phase === "pending") this.#takeUp(session, run);
    run.phase = "busy";
    const step = this.#step(session, run);
    const start = Date.now();
    const part: ToolPart = { id: this.#id("prt"), sessionID, messageID: step.info.id, type: "tool", callID, tool, state: { status: "pending", input, raw: JSON.stringify(input) } };
    step.parts.push(part);
    const states: ToolState[] = [
      { status: "pending", input, raw: JSON.stringify(input) },
      { status: "running", input, time: { start } },
      { status: "completed", input, output: "ok\n", title: tool, metadata: {}, time: { start, end: Date.now() } },
    ];
    for (const state of states) {
      part.state = state;
      this.#emitSession(sessionID, partEvent(this.#id("evt"), part));
    }
    this.#completeStep(session, step, "tool-calls");
    this.#newStep(session, run);
    return true;
  }

  /** The provider failed in a retryable way: `session.status retry`, and the status map shows it. */
  retry(sessionID: string, attempt = 1, message = "Provider is overloaded"): boolean {
    const session = this.#sessions.get(sessionID);
    const run = session?.run;
    if (!session || !run) return false;
    if (run.phase === "pending") this.#takeUp(session, run);
    run.phase = "retry";
    run.retry = { attempt, message, next: Date.now() + 2_000 * 2 ** (attempt - 1) };
    this.#emitSession(sessionID, statusEvent(this.#id("evt"), sessionID, { type: "retry", ...run.retry }));
    return true;
  }

  /** The retry went through: busy again. */
  retried(sessionID: string): boolean {
    const run = this.#sessions.get(sessionID)?.run;
    if (!run || run.phase !== "retry") return false;
    run.phase = "busy";
    delete run.retry;
    this.#emitSession(sessionID, statusEvent(this.#id("evt"), sessionID, { type: "busy" }));
    return true;
  }

  /** A tool call waits for a permission decision (`permission.asked`); the run blocks until a reply. */
  askPermission(sessionID: string, permission = "external_directory", patterns = ["/etc/*"]): string | null {
    const session = this.#sessions.get(sessionID);
    const run = session?.run;
    if (!session || !run || run.permission) return null;
    if (run.phase === "pending") this.#takeUp(session, run);
    const step = this.#step(session, run);
    const callID = this.#id("call");
    const input = { filePath: "/etc/hostname" };
    const part: ToolPart = { id: this.#id("prt"), sessionID, messageID: step.info.id, type: "tool", callID, tool: "read", state: { status: "running", input, time: { start: Date.now() } } };
    step.parts.push(part);
    this.#emitSession(sessionID, partEvent(this.#id("evt"), part));
    const requestID = this.#id("per");
    run.permission = requestID;
    this.#permissions.set(requestID, sessionID);
    this.#emitSession(sessionID, {
      id: this.#id("evt"),
      type: "permission.asked",
      properties: { id: requestID, sessionID, permission, patterns, metadata: {}, always: [], tool: { messageID: step.info.id, callID } },
    });
    return requestID;
  }

  setTodos(sessionID: string, todos: Array<{ content: string; status: string }>): boolean {
    const session = this.#sessions.get(sessionID);
    if (!session) return false;
    session.todos = todos.map((t) => ({ ...t, priority: "medium" }));
    this.#emitSession(sessionID, { id: this.#id("evt"), type: "todo.updated", properties: { sessionID, todos: structuredClone(session.todos) } });
    return true;
  }

  /** Aborts a run from the outside (as the opencode TUI would); true when there was one. */
  abortRun(sessionID: string): boolean {
    const session = this.#sessions.get(sessionID);
    if (!session?.run) return false;
    this.activity++;
    this.#abortRun(session);
    return true;
  }

  /** Starts a pending run now (the busy-delay race over). */
  takeUp(sessionID: string): boolean {
    const session = this.#sessions.get(sessionID);
    if (!session?.run || session.run.phase !== "pending") return false;
    this.#takeUp(session, session.run);
    return true;
  }

  takeUpAll(): void {
    for (const session of this.#sessions.values()) if (session.run?.phase === "pending") this.#takeUp(session, session.run);
  }

  /** Finishes every run in progress (the drain at the end of a test). Returns how many. */
  finishAll(text = "done"): number {
    let n = 0;
    for (const id of [...this.#sessions.keys()]) if (this.finish(id, text)) n++;
    return n;
  }

  /** Idle announced again (opencode often repeats it), whatever the session is doing. */
  emitDuplicateIdle(sessionID: string): void {
    this.#emitSession(sessionID, statusEvent(this.#id("evt"), sessionID, { type: "idle" }));
    this.#emitSession(sessionID, { id: this.#id("evt"), type: "session.idle", properties: { sessionID } });
  }

  /** Delivers the session's last `n` events again, late (same ids). */
  replayLast(sessionID: string, n = 1): number {
    const history = this.#sessions.get(sessionID)?.history ?? [];
    const late = history.slice(-n);
    for (const event of late) this.#emit(structuredClone(event));
    return late.length;
  }

  /** Someone else deletes the session (opencode's TUI, another client). */
  deleteBehindOurBack(sessionID: string): boolean {
    if (!this.#sessions.has(sessionID)) return false;
    this.activity++;
    this.#delete(sessionID);
    return true;
  }

  /** The agent disappears from opencode (config changed): prompts naming it now fail as unknown. */
  removeAgent(name: string): void {
    const at = this.#agents.findIndex((a) => a.name === name);
    if (at !== -1) this.#agents.splice(at, 1);
  }

  /** The agent is (back) in opencode's list. */
  addAgent(name: string): void {
    if (!this.#agents.some((a) => a.name === name)) this.#agents.unshift(agent(name, false));
  }

  /** Events are emitted but not delivered (they are lost, as while the stream is down). */
  dropEvents(on: boolean): void {
    this.#dropping = on;
  }

  /** The event stream goes down; events emitted meanwhile are lost. */
  disconnect(mode: DisconnectMode = "sdk"): void {
    this.#disconnectMode = mode;
    this.#streamUp = false;
    this.#loseConnections();
  }

  /** The stream comes back: a new `server.connected`, nothing replayed. */
  reconnect(): void {
    this.#streamUp = true;
    this.#wakeStreams();
  }

  /** opencode cannot be reached: every call throws `OpencodeUnreachableError` and the stream is down. */
  setUnreachable(on: boolean): void {
    this.#unreachable = on;
    if (on) this.#loseConnections();
    else this.#wakeStreams();
  }

  get unreachable(): boolean {
    return this.#unreachable;
  }

  /** Whether a stream consumer currently gets events. */
  get streamConnected(): boolean {
    return [...this.#connections].some((c) => !c.lost);
  }

  running(agentName: string): number {
    return this.#running.get(agentName) ?? 0;
  }

  /** Every session opencode holds (not deleted), with its title. */
  liveSessions(): Array<{ sessionID: string; title: string }> {
    return [...this.#sessions].map(([sessionID, session]) => ({ sessionID, title: session.info.title }));
  }

  activeRuns(): ActiveRun[] {
    const out: ActiveRun[] = [];
    for (const [sessionID, session] of this.#sessions) {
      if (session.run) out.push({ sessionID, title: session.info.title, agent: session.run.agent, phase: session.run.phase });
    }
    return out;
  }

  /** Waits until no call, deferred effect or undelivered event is pending and nothing moved for a few turns. */
  async settle(maxTurns = 20_000): Promise<void> {
    let quiet = 0;
    let last = -1;
    for (let turn = 0; turn < maxTurns; turn++) {
      await nextTurn();
      const busy = this.#pending > 0 || [...this.#connections].some((c) => c.queue.length > 0 && !c.lost);
      if (!busy && this.activity === last) {
        if (++quiet >= 3) return;
      } else {
        quiet = 0;
      }
      last = this.activity;
    }
    throw new Error(`the simulated opencode did not settle within ${maxTurns} event-loop turns`);
  }

  /** Lets `turns` event-loop turns pass (a partial wait, for interleavings). */
  async turns(turns: number): Promise<void> {
    for (let i = 0; i < turns; i++) await nextTurn();
  }

  // ---- internals ----------------------------------------------------------------------------------

  async #call<T>(what: string, effect: () => T): Promise<T> {
    this.activity++;
    this.#pending++;
    try {
      await this.turns(this.#latency());
      if (this.#unreachable) {
        throw new OpencodeUnreachableError(`opencode is unreachable at ${this.url} (could not ${what}): fetch failed (connect ECONNREFUSED)`);
      }
      const result = effect();
      this.activity++;
      await this.turns(this.#latency());
      return result;
    } finally {
      this.#pending--;
      this.activity++;
    }
  }

  #latency(): number {
    return this.#opts.latency > 0 ? Math.floor(this.#random() * (this.#opts.latency + 1)) : 0;
  }

  /** Runs `effect` a turn after the current call answered (opencode's asynchronous follow-up). */
  #later(effect: () => void, turns = 1): void {
    this.#pending++;
    void this.turns(turns).then(() => {
      this.#pending--;
      this.activity++;
      effect();
    });
  }

  #live(sessionID: string, what: string): SimSession {
    const session = this.#sessions.get(sessionID);
    if (!session) {
      throw new OpencodeRequestError(`opencode at ${this.url} refused to ${what} (HTTP 404): Session not found: ${sessionID}`, 404);
    }
    return session;
  }

  #takeUp(session: SimSession, run: Run): void {
    if (session.run !== run || run.phase !== "pending") return;
    clearTimeout(run.takeUpTimer);
    if (this.runGate && !this.runGate(session.info.id)) {
      session.run = null;
      this.#idle(session.info.id, 1);
      return;
    }
    run.phase = "busy";
    this.reachedModel.set(run.agent, (this.reachedModel.get(run.agent) ?? 0) + 1);
    const running = (this.#running.get(run.agent) ?? 0) + 1;
    this.#running.set(run.agent, running);
    this.maxRunning.set(run.agent, Math.max(this.maxRunning.get(run.agent) ?? 0, running));
    const sessionID = session.info.id;
    this.#emitSession(sessionID, statusEvent(this.#id("evt"), sessionID, { type: "busy" }));
    this.#newStep(session, run);
    if (this.#opts.autoFinishTurns > 0) {
      this.#later(() => {
        if (session.run === run) this.finish(sessionID, `done: ${sessionID}`);
      }, this.#opts.autoFinishTurns);
    }
  }

  /** The current step's assistant message, started if there is none. */
  #step(session: SimSession, run: Run): SessionMessage {
    return run.assistant ?? this.#newStep(session, run);
  }

  #newStep(session: SimSession, run: Run): SessionMessage {
    const sessionID = session.info.id;
    const info: AssistantMessage = {
      id: this.#id("msg"),
      sessionID,
      role: "assistant",
      time: { created: Date.now() },
      parentID: run.userMessageID,
      modelID: "sim-1",
      providerID: "sim",
      mode: run.agent,
      agent: run.agent,
      path: { cwd: this.directory, root: this.directory },
      cost: 0,
      tokens: { input: 10, output: 0, reasoning: 0, cache: { read: 0, write: 0 } },
    };
    const stepStart: Part = { id: this.#id("prt"), sessionID, messageID: info.id, type: "step-start" };
    const message: SessionMessage = { info, parts: [stepStart] };
    session.messages.push(message);
    run.assistant = message;
    this.#emitSession(sessionID, { id: this.#id("evt"), type: "message.updated", properties: { sessionID, info: structuredClone(info) } });
    this.#emitSession(sessionID, partEvent(this.#id("evt"), stepStart));
    return message;
  }

  #completeStep(session: SimSession, step: SessionMessage, reason: "stop" | "tool-calls"): void {
    const sessionID = session.info.id;
    const finish: Part = {
      id: this.#id("prt"),
      sessionID,
      messageID: step.info.id,
      type: "step-finish",
      reason,
      cost: 0,
      tokens: { input: 10, output: 5, reasoning: 0, cache: { read: 0, write: 0 } },
    };
    step.parts.push(finish);
    this.#emitSession(sessionID, partEvent(this.#id("evt"), finish));
    const info = step.info as AssistantMessage;
    info.time.completed = Date.now();
    info.finish = reason;
    this.#emitSession(sessionID, { id: this.#id("evt"), type: "message.updated", properties: { sessionID, info: structuredClone(info) } });
    if (session.run?.assistant === step) session.run.assistant = null;
  }

  #abortRun(session: SimSession): void {
    const run = session.run;
    if (!run) return;
    const sessionID = session.info.id;
    if (run.phase === "pending") {
      // Aborted before the loop took it up: nothing reached the model.
      clearTimeout(run.takeUpTimer);
      session.run = null;
      this.#idle(sessionID, 1);
      return;
    }
    this.#resolvePermission(run);
    this.#recordEnd(sessionID, "abort", "Aborted");
    const inBackoff = run.phase === "retry";
    const step = this.#step(session, run);
    const info = step.info as AssistantMessage;
    info.time.completed = Date.now();
    if (inBackoff) this.abortedInBackoff.add(sessionID);
    else {
      // During a retry back-off opencode emits no session.error: only message.updated and idle.
      this.#emitSession(sessionID, sessionErrorEvent(this.#id("evt"), sessionID, ABORTED));
      info.error = ABORTED;
    }
    this.#emitSession(sessionID, { id: this.#id("evt"), type: "message.updated", properties: { sessionID, info: structuredClone(info) } });
    this.#endRun(session, 2);
  }

  /** The run is over: the slot in opencode frees and the session goes idle (often announced twice). */
  #endRun(session: SimSession, idles = this.#random() < this.#opts.duplicateIdleChance ? 2 : 1): void {
    const run = session.run;
    if (!run) return;
    session.run = null;
    if (run.phase !== "pending") this.#running.set(run.agent, (this.#running.get(run.agent) ?? 1) - 1);
    this.#idle(session.info.id, idles);
  }

  #idle(sessionID: string, times: number): void {
    for (let i = 0; i < times; i++) {
      this.#emitSession(sessionID, statusEvent(this.#id("evt"), sessionID, { type: "idle" }));
      this.#emitSession(sessionID, { id: this.#id("evt"), type: "session.idle", properties: { sessionID } });
    }
  }

  #recordEnd(sessionID: string, kind: "answer" | "failure" | "abort", text: string): void {
    this.runEnds.set(sessionID, [...(this.runEnds.get(sessionID) ?? []), { kind, text }]);
  }

  #resolvePermission(run: Run): void {
    if (run.permission) this.#permissions.delete(run.permission);
    run.permission = null;
  }

  /** Deletes a session and (as opencode does) its children, one `session.deleted` each. */
  #delete(sessionID: string): void {
    const session = this.#sessions.get(sessionID);
    if (!session) return;
    for (const child of [...this.#sessions.values()]) if (child.info.parentID === sessionID) this.#delete(child.info.id);
    const run = session.run;
    if (run) {
      // The model call stops, but a busy status stays behind until someone aborts the deleted id.
      clearTimeout(run.takeUpTimer);
      if (run.phase !== "pending") {
        this.#running.set(run.agent, (this.#running.get(run.agent) ?? 1) - 1);
        this.#staleBusy.add(sessionID);
      }
      this.#resolvePermission(run);
      session.run = null;
    }
    this.#sessions.delete(sessionID);
    this.#emit({ id: this.#id("evt"), type: "session.deleted", properties: { sessionID, info: structuredClone(session.info) } });
  }

  #textPart(sessionID: string, messageID: string, text: string): TextPart {
    return { id: this.#id("prt"), sessionID, messageID, type: "text", text, time: { start: Date.now() } };
  }

  #emitSession(sessionID: string, event: Event): void {
    const session = this.#sessions.get(sessionID);
    if (session) {
      session.history.push(event);
      if (session.history.length > 50) session.history.shift();
    }
    this.#emit(event);
  }

  #emit(event: Event): void {
    this.activity++;
    // Events are built fresh for each emit (parts and infos cloned), so they can be shared.
    let delivered = false;
    if (!this.#dropping) {
      for (const connection of this.#connections) {
        if (connection.lost) continue;
        connection.queue.push(event);
        connection.wake?.();
        delivered = true;
      }
    }
    if (!delivered) this.droppedEvents++;
  }

  #loseConnections(): void {
    for (const connection of this.#connections) {
      connection.lost = true;
      connection.queue.length = 0;
      connection.onError(new TypeError("terminated: other side closed"));
      connection.wake?.();
    }
  }

  #wakeStreams(): void {
    const waiting = [...this.#waitingForStream];
    this.#waitingForStream.clear();
    for (const wake of waiting) wake();
  }

  get #up(): boolean {
    return this.#streamUp && !this.#unreachable;
  }

  /**
   * One subscription, as the SDK's iterator behaves: it connects on first iteration, starts each
   * connection with `server.connected`, reports a lost connection to `onError`, and (mode "sdk")
   * reconnects by itself, or ends ("end") or throws ("throw") so the caller reconnects.
   */
  async *#stream(signal: AbortSignal, onError: (error: unknown) => void): AsyncGenerator<Event> {
    const aborted = new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    while (!signal.aborted) {
      if (!this.#up) {
        // The SDK retries a stream it cannot get every few seconds, and says so each time.
        const retry = setTimeout(() => onError(new TypeError("fetch failed")), SDK_RETRY_MS);
        await Promise.race([aborted, new Promise<void>((resolve) => this.#waitingForStream.add(resolve))]);
        clearTimeout(retry);
        continue;
      }
      const connection: Connection = { queue: [], wake: null, lost: false, onError };
      this.#connections.add(connection);
      try {
        this.activity++;
        yield { id: this.#id("evt"), type: "server.connected", properties: {} };
        while (!signal.aborted && !connection.lost) {
          const event = connection.queue.shift();
          if (event) {
            this.activity++;
            yield event;
            continue;
          }
          let quiet = false;
          const heartbeat = setTimeout(() => {
            quiet = true;
            connection.wake?.();
          }, HEARTBEAT_MS);
          await Promise.race([aborted, new Promise<void>((resolve) => (connection.wake = resolve))]);
          clearTimeout(heartbeat);
          connection.wake = null;
          // Not counted as activity: a heartbeat changes nothing, and settle() must still see quiet.
          if (quiet && !signal.aborted && !connection.lost) yield HEARTBEAT;
        }
      } finally {
        this.#connections.delete(connection);
      }
      if (signal.aborted) return;
      if (this.#disconnectMode === "end") return;
      if (this.#disconnectMode === "throw") throw new TypeError("terminated: other side closed");
    }
  }

  #id(prefix: string): string {
    return `${prefix}_sim${String(++this.#ids).padStart(6, "0")}`;
  }
}

function agent(name: string, hidden: boolean): Agent {
  return {
    name,
    mode: hidden || name === "build" || name === "plan" ? "primary" : "subagent",
    native: BUILT_IN_AGENTS.includes(name) || HIDDEN_AGENTS.includes(name),
    ...(hidden ? { hidden: true } : {}),
    permission: [],
    options: {},
  };
}

function statusEvent(id: string, sessionID: string, status: SessionStatus): Event {
  return { id, type: "session.status", properties: { sessionID, status } };
}

function sessionErrorEvent(id: string, sessionID: string, error: SessionError): Event {
  return { id, type: "session.error", properties: { sessionID, error } };
}

function partEvent(id: string, part: Part): Event {
  return { id, type: "message.part.updated", properties: { sessionID: part.sessionID, part: structuredClone(part), time: Date.now() } };
}

/** One turn of the event loop (real `setImmediate`: fake timers leave it alone). */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A small seeded PRNG (mulberry32), so one seed always gives the same interleaving. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
