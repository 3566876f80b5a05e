import type { OpencodeApi, OpencodeEvent } from "../opencode/client.js";
import { OpencodeRequestError } from "../opencode/client.js";
import { ABORTED_ERROR, toSignal, type SessionSignal } from "../opencode/session-signal.js";
import { StreamedAnswer } from "../opencode/streamed-answer.js";
import { outcomeOfSteps, stepsOf, type Step } from "../opencode/transcript.js";
import { log } from "../log.js";
import { DEFAULT_POLICY, TODO_CONTINUE_PROMPT, type TaskPolicy } from "./policy.js";
import type { TaskRecords } from "./records.js";
import type { Task, TaskProgress, Todo } from "./task.js";
import { oneLine } from "./task-text.js";

/** The opencode calls the follower makes (a seam tests can feed with recorded answers). */
export type FollowerApi = Pick<OpencodeApi, "messages" | "statuses" | "sessionExists" | "replyPermission">;

/** What the follower asks of whoever runs the sessions (the session runner): it never touches a run itself. */
export interface SessionControl {
  /** Aborts the task's session and ends the task `error` with `reason` (a guard tripped). */
  stop(taskId: string, reason: string): void;
  /** Sends the task's session another prompt (a continuation), as its agent and with its tools. */
  continue(taskId: string, text: string): Promise<void>;
}

interface Followed {
  taskId: string;
  /** Our prompt has been taken up (busy, retry or an assistant message seen): an idle now means done. */
  taken: boolean;
  toolCalls: Set<string>;
  /** What the stream has shown of the answer: settles a finished run without reading its messages. */
  answer: StreamedAnswer;
  todos: Todo[];
  /** We aborted the session ourselves; the abort's own error events are expected, not a failure. */
  aborting: boolean;
  /** A settle is in flight; duplicate idles wait for it instead of settling again. */
  settling: Promise<boolean> | null;
  /** When the last event for this session arrived (stall detection). */
  lastEventAt: number;
  /** The runaway guard: the last tool call's tool + input, and how many times in a row it came. */
  lastCall: string | null;
  repeats: number;
  /** Calls whose input has been counted by the repeat check. */
  inputsSeen: Set<string>;
  continuations: number;
  /** The answer that ended the run before our latest continuation: not the outcome of the new run. */
  continuedAfter: string | null;
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
  readonly #records: TaskRecords;
  readonly #control: SessionControl;
  readonly #policy: TaskPolicy;
  readonly #bySession = new Map<string, Followed>();

  constructor(api: FollowerApi, records: TaskRecords, control: SessionControl, policy: TaskPolicy = DEFAULT_POLICY) {
    this.#api = api;
    this.#records = records;
    this.#control = control;
    this.#policy = policy;
  }

  follow(taskId: string, sessionID: string): void {
    const task = this.#records.get(taskId);
    this.#bySession.set(sessionID, {
      taskId,
      taken: false,
      toolCalls: new Set(),
      // Followed after the prompt (a recovery): the run's first events were not ours to see.
      answer: new StreamedAnswer(task?.prompted_at === null),
      todos: [],
      aborting: false,
      settling: null,
      lastEventAt: Date.now(),
      lastCall: null,
      repeats: 0,
      inputsSeen: new Set(),
      continuations: task?.progress.todo_continuations ?? 0,
      continuedAfter: null,
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

  /** The event stream reconnected: what it sent meanwhile is lost, so settles read the messages again. */
  onReconnect(): void {
    for (const followed of this.#bySession.values()) followed.answer.lose();
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
    let task = this.#records.get(followed.taskId);
    if (!task || task.status !== "running") return;
    followed.lastEventAt = Date.now();
    if (task.progress.stalled_since) {
      this.#records.progress(followed.taskId, { ...task.progress, stalled_since: null });
      task = this.#records.get(followed.taskId)!;
    }
    switch (signal.kind) {
      case "busy":
        followed.taken = true;
        if (signal.retry) {
          const { attempt, message, next } = signal.retry;
          const retry = { attempt, message, next_at: new Date(next).toISOString() };
          this.#records.progress(followed.taskId, { ...this.#progressOf(followed), retry }, true);
        } else if (task.progress.retry) {
          this.#records.progress(followed.taskId, { ...this.#progressOf(followed), retry: null });
        }
        return;
      case "user":
        followed.answer.onUser(signal.messageID);
        return;
      case "assistant":
        followed.taken = true;
        followed.answer.onAssistant(signal);
        return;
      case "idle":
        if (followed.taken) void this.#settleOnce(sessionID, followed, true);
        return;
      case "error":
        if (followed.aborting && signal.name === ABORTED_ERROR) return;
        this.#records.finish(followed.taskId, "error", { error: signal.message });
        return;
      case "deleted":
        this.#records.finish(followed.taskId, "cancelled", { error: `session ${sessionID} was deleted` });
        return;
      case "tool":
        this.#onTool(followed, signal.callID, signal.tool, signal.input);
        return;
      case "text":
        // opencode also emits our prompt's text part (the user message); only assistant text is progress.
        if (!followed.answer.onText(signal) || signal.text.length === 0) return;
        this.#records.progress(followed.taskId, { ...task.progress, last_message: preview(signal.text) });
        return;
      case "todos":
        followed.todos = signal.todos;
        return;
      case "permission":
        void this.#onPermission(followed, signal.requestID, signal.permission, signal.patterns);
        return;
      case "permission-replied": {
        const asked = task.progress.permission;
        if (asked?.request_id === signal.requestID && asked.decision === "waiting") {
          const decision = signal.reply === "reject" ? "rejected" : "allowed";
          this.#records.progress(followed.taskId, { ...task.progress, permission: { ...asked, decision } });
        }
        return;
      }
    }
  }

  #progressOf(followed: Followed): TaskProgress {
    return this.#records.get(followed.taskId)!.progress;
  }

  /** Counts each call once (by call id) and trips the runaway guards. */
  #onTool(followed: Followed, callID: string, tool: string, input: string | null): void {
    if (followed.aborting) return;
    const progress = this.#progressOf(followed);
    const known = followed.toolCalls.has(callID);
    followed.toolCalls.add(callID);
    if (!known || progress.last_tool !== tool) {
      this.#records.progress(followed.taskId, { ...progress, tool_calls: followed.toolCalls.size, last_tool: tool });
    }
    if (followed.toolCalls.size > this.#policy.maxToolCalls) {
      this.#control.stop(followed.taskId, `stopped: more than ${this.#policy.maxToolCalls} tool calls (limits.maxToolCalls)`);
      return;
    }
    if (input === null || followed.inputsSeen.has(callID)) return;
    followed.inputsSeen.add(callID);
    const call = `${tool} ${input}`;
    followed.repeats = call === followed.lastCall ? followed.repeats + 1 : 1;
    followed.lastCall = call;
    if (followed.repeats >= this.#policy.maxRepeatedToolCalls) {
      this.#control.stop(
        followed.taskId,
        `stopped: the same ${tool} call was made ${followed.repeats} times in a row (limits.maxRepeatedToolCalls), input ${input.slice(0, 200)}`,
      );
    }
  }

  /** A headless session would wait forever for an answer: apply the policy, and show it in progress. */
  async #onPermission(followed: Followed, requestID: string, permission: string, patterns: string[]): Promise<void> {
    const policy = this.#policy.onPermission;
    const decision = policy === "wait" ? "waiting" : policy === "allow" ? "allowed" : "rejected";
    this.#records.progress(followed.taskId, {
      ...this.#progressOf(followed),
      permission: { request_id: requestID, permission, patterns, decision },
    });
    if (policy === "wait") return;
    try {
      await this.#api.replyPermission(
        requestID,
        policy === "allow" ? "once" : "reject",
        policy === "reject" ? "Background tasks may not ask for permissions (permissions.onAsk is reject)." : undefined,
      );
    } catch (error) {
      log.warn("could not answer a permission request", { taskId: followed.taskId, requestID, error: String(error) });
    }
  }

  /**
   * Reads the session's messages once and ends the task if its run is over. Safe to call any time:
   * a run still in progress is left alone. Resolves false when the messages could not be read.
   */
  settle(sessionID: string): Promise<boolean> {
    const followed = this.#bySession.get(sessionID);
    return followed ? this.#settleOnce(sessionID, followed, false) : Promise.resolve(false);
  }

  /** `fromStream`: an idle; settle from the streamed answer when it shows the run over, else read. */
  #settleOnce(sessionID: string, followed: Followed, fromStream: boolean): Promise<boolean> {
    followed.settling ??= this.#settle(sessionID, followed, fromStream).finally(() => {
      followed.settling = null;
    });
    return followed.settling;
  }

  async #settle(sessionID: string, followed: Followed, fromStream: boolean): Promise<boolean> {
    // No await before the finish when the stream tells: the idle's own turn ends the task.
    let steps = fromStream ? followed.answer.steps() : null;
    if (steps === null || outcomeOfSteps(steps).kind === "pending") steps = await this.#read(sessionID, followed);
    if (steps === null) return false;
    const task = this.#records.get(followed.taskId);
    // Our own abort ends the task (an abort during a provider retry even looks like a finished answer).
    if (!task || task.status !== "running" || followed.aborting) return true;
    const outcome = outcomeOfSteps(steps);
    if (outcome.kind === "pending") return true;
    const lastAnswer = steps.at(-1)?.id ?? null;
    if (lastAnswer !== null && lastAnswer === followed.continuedAfter) return true; // the continuation has not answered yet
    if (outcome.kind === "error") {
      if (outcome.aborted && followed.aborting) return true;
      this.#records.finish(followed.taskId, "error", { error: outcome.message });
      return true;
    }
    const incomplete = followed.todos.filter((t) => t.status !== "completed" && t.status !== "cancelled");
    if (incomplete.length > 0 && followed.continuations < this.#policy.todoContinuations) {
      // Stopped with work left: nudge it on (bounded), as a new run that must be taken up again.
      followed.continuations++;
      followed.taken = false;
      followed.continuedAfter = lastAnswer;
      this.#records.progress(followed.taskId, { ...task.progress, todo_continuations: followed.continuations });
      await this.#control.continue(followed.taskId, TODO_CONTINUE_PROMPT);
      return true;
    }
    const result = incomplete.length
      ? `${outcome.text}\n\nIncomplete todos:\n${incomplete.map((t) => `- [${t.status}] ${t.content}`).join("\n")}`
      : outcome.text;
    const progress = {
      ...task.progress,
      last_message: preview(outcome.text) || task.progress.last_message,
      ...(incomplete.length ? { incomplete_todos: incomplete } : {}),
    };
    this.#records.finish(followed.taskId, "completed", { result, progress });
    return true;
  }

  /** The session's steps from its stored messages; [] when it is gone (the task ended), null when unreadable. */
  async #read(sessionID: string, followed: Followed): Promise<Step[] | null> {
    try {
      return stepsOf(await this.#api.messages(sessionID));
    } catch (error) {
      if (!(error instanceof OpencodeRequestError && error.status === 404)) {
        log.warn("could not read a finished session; will retry on the next sweep", { sessionID, error: String(error) });
        return null;
      }
      this.#records.finish(followed.taskId, "error", { error: `session ${sessionID} no longer exists in opencode` });
      return [];
    }
  }

  /**
   * Catches up with what the event stream may have missed: one status request for all sessions, then
   * a messages read only for sessions that are not busy but whose task is still running.
   * `all` (after a reconnect) checks every session; otherwise only those past the take-up grace.
   */
  async resync(now: number, all: boolean): Promise<void> {
    if (this.#bySession.size === 0) return;
    const busy = await this.#api.statuses();
    log.debug("resync", { all, busy: Object.keys(busy).length, followed: this.#bySession.size });
    const checks: Array<Promise<void>> = [];
    for (const [sessionID, followed] of this.#bySession) {
      const task = this.#records.get(followed.taskId);
      if (!task || task.status !== "running" || followed.aborting) continue;
      if (busy[sessionID]) {
        followed.taken = true;
        if (now - followed.lastEventAt >= this.#policy.stallMs) checks.push(this.#checkStalled(sessionID, followed, task));
        continue;
      }
      if (task.prompted_at === null) continue;
      if (!all && !followed.taken && now - task.prompted_at < TAKE_UP_GRACE_MS) continue;
      checks.push(this.#check(sessionID, followed));
    }
    await Promise.all(checks);
  }

  async #check(sessionID: string, followed: Followed): Promise<void> {
    // A failed read says nothing about the run: leave it to the next sweep rather than failing the task.
    if (!(await this.settle(sessionID))) return;
    const task = this.#records.get(followed.taskId);
    // Still running and prompted long ago (a continuation resets the clock), yet idle with no answer:
    // the run died without telling us (an error missed while disconnected, a session deleted behind our back).
    if (!task || task.status !== "running" || followed.aborting) return;
    if (task.prompted_at === null || Date.now() - task.prompted_at < TAKE_UP_GRACE_MS) return;
    const error = (await this.#api.sessionExists(sessionID))
      ? `session ${sessionID} stopped without finishing an answer`
      : `session ${sessionID} no longer exists in opencode`;
    this.#records.finish(followed.taskId, "error", { error });
  }

  /**
   * Busy, but silent for longer than the stall limit. A slow model is not dead, so keep waiting; but a
   * deleted session can leave a stale busy status behind, so make sure it still exists.
   */
  async #checkStalled(sessionID: string, followed: Followed, task: Task): Promise<void> {
    if (!(await this.#api.sessionExists(sessionID))) {
      this.#records.finish(followed.taskId, "error", { error: `session ${sessionID} no longer exists in opencode` });
      return;
    }
    if (!task.progress.stalled_since) {
      log.warn("task has shown no events for a while; opencode says it is still busy", { taskId: task.id, sessionID });
      this.#records.progress(task.id, { ...task.progress, stalled_since: new Date(followed.lastEventAt).toISOString() });
    }
  }
}

const preview = (text: string): string => oneLine(text, PREVIEW);
