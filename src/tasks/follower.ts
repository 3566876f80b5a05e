import type { OpencodeApi, OpencodeEvent } from "../opencode/client.js";
import { OpencodeRequestError } from "../opencode/client.js";
import { ABORTED_ERROR, toSignal, type SessionSignal } from "../opencode/session-signal.js";
import { outcomeOf } from "../opencode/transcript.js";
import { log } from "../log.js";
import type { Task, TaskProgress, TerminalStatus, Todo } from "./task.js";

/** What the follower may do to a task: the manager stores each change before announcing it. */
/** The opencode calls the follower makes (a seam tests can feed with recorded answers). */
export type FollowerApi = Pick<OpencodeApi, "messages" | "statuses" | "sessionExists">;

export interface TaskSink {
  get(taskId: string): Task | undefined;
  progress(taskId: string, progress: TaskProgress): void;
  finish(taskId: string, status: TerminalStatus, fields: { result?: string | null; error?: string | null }): void;
}

interface Followed {
  taskId: string;
  /** Our prompt has been taken up (busy, retry or an assistant message seen): an idle now means done. */
  taken: boolean;
  toolCalls: Set<string>;
  /** Assistant message ids seen: text parts of other messages (our own prompt) are not progress. */
  assistantMessages: Set<string>;
  todos: Todo[];
  /** We aborted the session ourselves; the abort's own error events are expected, not a failure. */
  aborting: boolean;
  /** A settle (messages read) is in flight; duplicate idles wait for it instead of reading again. */
  settling: Promise<boolean> | null;
}

const PREVIEW = 200;
/** After prompt_async, the session may not show as busy for up to ~1.2 s on a cold instance. */
const TAKE_UP_GRACE_MS = 5_000;

/**
 * Follows the sessions of running tasks through opencode's event stream and turns what it sees into
 * task progress and exactly one terminal state. Handlers are idempotent: opencode often repeats idle
 * and status events, and a terminal task ignores everything after.
 */
export class SessionFollower {
  readonly #api: FollowerApi;
  readonly #sink: TaskSink;
  readonly #bySession = new Map<string, Followed>();

  constructor(api: FollowerApi, sink: TaskSink) {
    this.#api = api;
    this.#sink = sink;
  }

  follow(taskId: string, sessionID: string): void {
    this.#bySession.set(sessionID, {
      taskId,
      taken: false,
      toolCalls: new Set(),
      assistantMessages: new Set(),
      todos: [],
      aborting: false,
      settling: null,
    });
  }

  unfollow(sessionID: string): void {
    this.#bySession.delete(sessionID);
  }

  /** Marks the session as aborted by us, so its abort errors do not end the task as a failure. */
  markAborting(sessionID: string): void {
    const followed = this.#bySession.get(sessionID);
    if (followed) followed.aborting = true;
  }

  get followedCount(): number {
    return this.#bySession.size;
  }

  onEvent(event: OpencodeEvent): void {
    const routed = toSignal(event);
    if (!routed) return;
    const followed = this.#bySession.get(routed.sessionID);
    if (followed) this.#apply(routed.sessionID, followed, routed.signal);
  }

  #apply(sessionID: string, followed: Followed, signal: SessionSignal): void {
    const task = this.#sink.get(followed.taskId);
    if (!task || task.status !== "running") return;
    switch (signal.kind) {
      case "busy":
        followed.taken = true;
        return;
      case "assistant":
        followed.taken = true;
        followed.assistantMessages.add(signal.messageID);
        return;
      case "idle":
        if (followed.taken) void this.settle(sessionID);
        return;
      case "error":
        if (followed.aborting && signal.name === ABORTED_ERROR) return;
        this.#sink.finish(followed.taskId, "error", { error: signal.message });
        return;
      case "deleted":
        this.#sink.finish(followed.taskId, "cancelled", { error: `session ${sessionID} was deleted` });
        return;
      case "tool": {
        const known = followed.toolCalls.has(signal.callID);
        followed.toolCalls.add(signal.callID);
        if (!known || task.progress.last_tool !== signal.tool) {
          this.#sink.progress(followed.taskId, {
            ...task.progress,
            tool_calls: followed.toolCalls.size,
            last_tool: signal.tool,
          });
        }
        return;
      }
      case "text":
        // opencode also emits our prompt's text part (the user message); only assistant text is progress.
        if (!followed.assistantMessages.has(signal.messageID)) return;
        this.#sink.progress(followed.taskId, { ...task.progress, last_message: preview(signal.text) });
        return;
      case "todos":
        followed.todos = signal.todos;
        return;
    }
  }

  /**
   * Reads the session's messages once and ends the task if its run is over. Safe to call any time:
   * a run still in progress is left alone. Resolves false when the messages could not be read.
   */
  settle(sessionID: string): Promise<boolean> {
    const followed = this.#bySession.get(sessionID);
    if (!followed) return Promise.resolve(false);
    followed.settling ??= this.#settle(sessionID, followed).finally(() => {
      followed.settling = null;
    });
    return followed.settling;
  }

  async #settle(sessionID: string, followed: Followed): Promise<boolean> {
    let messages;
    try {
      messages = await this.#api.messages(sessionID);
    } catch (error) {
      if (error instanceof OpencodeRequestError && error.status === 404) {
        this.#sink.finish(followed.taskId, "error", { error: `session ${sessionID} no longer exists in opencode` });
      } else {
        log.warn("could not read a finished session; will retry on the next sweep", { sessionID, error: String(error) });
        return false;
      }
      return true;
    }
    const task = this.#sink.get(followed.taskId);
    if (!task || task.status !== "running") return true;
    const outcome = outcomeOf(messages);
    if (outcome.kind === "pending") return true;
    if (outcome.kind === "error") {
      if (outcome.aborted && followed.aborting) return true;
      this.#sink.finish(followed.taskId, "error", { error: outcome.message });
      return true;
    }
    const incomplete = followed.todos.filter((t) => t.status !== "completed" && t.status !== "cancelled");
    if (incomplete.length > 0) this.#sink.progress(followed.taskId, { ...task.progress, incomplete_todos: incomplete });
    const latest = this.#sink.get(followed.taskId) ?? task;
    this.#sink.progress(followed.taskId, { ...latest.progress, last_message: preview(outcome.text) || latest.progress.last_message });
    this.#sink.finish(followed.taskId, "completed", { result: outcome.text });
    return true;
  }

  /**
   * Catches up with what the event stream may have missed: one status request for all sessions, then
   * a messages read only for sessions that are not busy but whose task is still running.
   * `all` (after a reconnect) checks every session; otherwise only those past the take-up grace.
   */
  async resync(now: number, all: boolean): Promise<void> {
    if (this.#bySession.size === 0) return;
    const busy = await this.#api.statuses();
    const checks: Array<Promise<void>> = [];
    for (const [sessionID, followed] of this.#bySession) {
      if (busy[sessionID]) {
        followed.taken = true;
        continue;
      }
      const task = this.#sink.get(followed.taskId);
      if (!task || task.status !== "running" || task.prompted_at === null) continue;
      if (!all && !followed.taken && now - task.prompted_at < TAKE_UP_GRACE_MS) continue;
      checks.push(this.#check(sessionID, followed, now - task.prompted_at >= TAKE_UP_GRACE_MS));
    }
    await Promise.all(checks);
  }

  async #check(sessionID: string, followed: Followed, pastGrace: boolean): Promise<void> {
    // A failed read says nothing about the run: leave it to the next sweep rather than failing the task.
    if (!(await this.settle(sessionID))) return;
    const task = this.#sink.get(followed.taskId);
    if (!task || task.status !== "running" || !pastGrace) return;
    // Idle, no finished answer, and long past the prompt: the run died without telling us
    // (an error we missed while disconnected, or a session deleted behind our back).
    const error = (await this.#api.sessionExists(sessionID))
      ? `session ${sessionID} stopped without finishing an answer`
      : `session ${sessionID} no longer exists in opencode`;
    this.#sink.finish(followed.taskId, "error", { error });
  }
}

function preview(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > PREVIEW ? `${flat.slice(0, PREVIEW - 1)}…` : flat;
}
