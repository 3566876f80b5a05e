import type { OpencodeApi, OpencodeEvent } from "../opencode/client.js";
import type { EventWatcher } from "../opencode/event-watcher.js";
import { busySessionOf } from "../opencode/session-signal.js";
import { outcomeOf } from "../opencode/transcript.js";
import { log } from "../log.js";
import { SessionFollower, type SessionControl } from "./follower.js";
import { DEFAULT_POLICY, type TaskPolicy } from "./policy.js";
import type { TaskRecords } from "./records.js";
import { claimMarkedSessions, sessionTitle } from "./session-marks.js";
import { StoppedSessions } from "./stopped-sessions.js";
import { isTerminal, type Task, type TerminalStatus } from "./task.js";
import { formatMs } from "./task-text.js";

export interface SessionRunnerOptions {
  api: OpencodeApi;
  /** opencode's event stream: the runner follows its sessions through it. */
  events: EventWatcher;
  /** Where every change of a task is written. */
  records: TaskRecords;
  disabledTools: { always: Record<string, boolean>; atMaxDepth: Record<string, boolean> };
  /** Guards and limits; tasks `maxDepth` deep get this server's tools switched off too (they may not launch deeper). */
  policy?: TaskPolicy;
  /** The opencode was spawned by this server (its sessions do not survive our exit). */
  embedded: boolean;
  /** After a restart, send interrupted sessions a short continue prompt instead of ending them. */
  resumeInterrupted: boolean;
}

export const CONTINUE_PROMPT =
  "Your previous run was interrupted by a restart. Continue the task from where you left off and finish it.";

/**
 * Runs tasks' sessions. The body of a task's queued job: create the session, prompt it, then hold the
 * agent's slot until the task is terminal. The job settles exactly once, when the task ends, whoever ends
 * it. A job for a task recovered after a restart picks up from the last step the records hold.
 * Its follower turns the session's events into task changes and asks the runner (as `SessionControl`)
 * for stops and continuations; sessions of ended tasks are kept stopped (`StoppedSessions`).
 */
export class SessionRunner implements SessionControl {
  readonly #o: SessionRunnerOptions & { policy: TaskPolicy };
  readonly #follower: SessionFollower;
  /** Sessions of ended tasks that must not run: aborted, and aborted again when a run shows up anyway. */
  readonly #stopped: StoppedSessions;
  /** Tasks being stopped: aborts in flight, the terminal state not yet stored. */
  readonly #stopping = new Set<string>();
  /** Per task, the prompt opencode has not answered yet: a run it starts must not escape a stop. */
  readonly #prompting = new Map<string, Promise<void>>();
  /** The restart's look for sessions created before the crash (see claimMarkedSessions); jobs wait for it before creating one. */
  #claimed: Promise<void> = Promise.resolve();

  constructor(options: SessionRunnerOptions) {
    this.#o = { ...options, policy: options.policy ?? DEFAULT_POLICY };
    this.#follower = new SessionFollower(options.api, options.records, this, this.#o.policy);
    this.#stopped = new StoppedSessions(options.api);
    options.events.on("event", (event) => this.#onEvent(event));
    options.events.on("connected", (reconnect) => {
      if (reconnect) this.#follower.onReconnect();
    });
  }

  #onEvent(event: OpencodeEvent): void {
    const busy = busySessionOf(event);
    if (busy !== null) this.#stopped.onBusy(busy);
    this.#follower.onEvent(event);
  }

  /**
   * Catches up with what the event stream may have missed (`all` after a reconnect; see
   * SessionFollower.resync), and sends again aborts that did not reach opencode or that a run raced.
   */
  async resync(all: boolean): Promise<void> {
    const now = Date.now();
    if (this.#stopped.size > 0) await this.#stopped.resync(await this.#o.api.statuses(), now);
    await this.#follower.resync(now, all);
  }

  /**
   * After a restart, before any job creates a session: give unfinished tasks back the sessions opencode
   * made for them before the crash, and delete marked sessions no task refers to.
   */
  recover(unfinished: readonly Task[]): void {
    if (unfinished.length === 0) return;
    const since = Math.min(...unfinished.map((t) => t.created_at));
    this.#claimed = claimMarkedSessions(this.#o.api, this.#o.records, this.#o.embedded, since);
  }

  /** A queued task's job: it has a slot now. */
  async run(taskId: string): Promise<void> {
    if (!this.#o.records.markRunning(taskId)) return;
    await this.#drive(taskId, false);
  }

  /** A task that was running when the previous server stopped: its job re-takes the slot. */
  async resume(taskId: string): Promise<void> {
    await this.#drive(taskId, true);
  }

  async #drive(taskId: string, recovered: boolean): Promise<void> {
    const { api, records } = this.#o;
    const follower = this.#follower;
    let task = records.get(taskId);
    if (!task || isTerminal(task.status)) return;
    let timer: NodeJS.Timeout | undefined;
    // Kept here, not read back from the record: a task that ends while its session is being created never
    // records it, and the session must still be unfollowed and deleted.
    let sessionID: string | null = task.session_id;
    try {
      if (sessionID === null) {
        await this.#claimed;
        sessionID = records.get(taskId)!.session_id;
      }
      if (sessionID === null) {
        sessionID = await api.createSession(this.#sessionInput(task));
        records.markSession(taskId, sessionID, this.#o.embedded);
      }
      follower.follow(taskId, sessionID);
      task = records.get(taskId)!;
      await this.#o.events.ready();
      if (this.#ended(taskId)) {
        // Ended while the session was being set up: it never gets our prompt.
        if (task.prompted_at === null) await this.#stopped.discard(sessionID);
        return;
      }
      let resumed = false;
      if (task.prompted_at === null && !(recovered && (await this.#promptWasTaken(sessionID)))) {
        await this.#prompt(task, task.prompt);
      } else if (recovered) {
        if (task.prompted_at === null) records.markPrompted(taskId);
        if (task.embedded) resumed = await this.#afterInterruption(task);
      }
      task = records.get(taskId)!;
      if (task.timeout_ms !== null && !isTerminal(task.status)) {
        const ms = task.timeout_ms;
        const left = Math.max(0, (task.prompted_at ?? Date.now()) + ms - Date.now());
        timer = setTimeout(() => void this.stop(taskId, `timed out after ${formatMs(ms)} (timeout_ms ${ms})`), left);
      }
      // Whatever happened while we were down: finished, failed, gone, or still busy (then events follow).
      if (recovered && !resumed) await follower.settle(sessionID);
      while (!this.#ended(taskId)) await records.waitForTerminal(taskId, 60_000);
    } catch (error) {
      records.finish(taskId, "error", { error: error instanceof Error ? error.message : String(error) });
    } finally {
      clearTimeout(timer);
      if (sessionID !== null) {
        follower.unfollow(sessionID);
        // An abort that has not reached opencode yet: the session may still run, so the slot stays taken.
        await this.#stopped.whenStopped(sessionID);
      }
    }
  }

  /** The task id is in the title from the start (see session-marks). */
  #sessionInput(task: Task): { title: string; parentID?: string } {
    return { title: sessionTitle(task), ...(task.parent_session_id ? { parentID: task.parent_session_id } : {}) };
  }

  async #prompt(task: Task, text: string): Promise<void> {
    // Being stopped: its abort may already have reached opencode, and a run started now would outlive it.
    if (this.#stopping.has(task.id)) return;
    const sessionID = task.session_id!;
    const sent = this.#o.api.prompt(sessionID, {
      text,
      agent: task.agent,
      ...(task.model ? { model: task.model } : {}),
      tools:
        task.depth >= this.#o.policy.maxDepth
          ? { ...this.#o.disabledTools.always, ...this.#o.disabledTools.atMaxDepth }
          : this.#o.disabledTools.always,
    });
    this.#prompting.set(task.id, sent);
    try {
      await sent;
    } finally {
      if (this.#prompting.get(task.id) === sent) this.#prompting.delete(task.id);
    }
    this.#o.records.markPrompted(task.id);
    // Ended some other way while the prompt was in flight: stop the run the prompt started.
    if (this.#ended(task.id)) await this.#stopped.abort(sessionID);
  }

  /** After a crash between prompt and record: opencode has our user message if the prompt went through. */
  async #promptWasTaken(sessionID: string): Promise<boolean> {
    const messages = await this.#o.api.messages(sessionID);
    return messages.some((m) => m.info.role === "user");
  }

  /**
   * Our embedded opencode died with the previous server, mid-run: end the task, or (resumeInterrupted)
   * send a continue prompt. Returns whether it was resumed. A run that had finished is left to settle().
   */
  async #afterInterruption(task: Task): Promise<boolean> {
    const outcome = outcomeOf(await this.#o.api.messages(task.session_id!));
    if (outcome.kind === "completed" || (outcome.kind === "error" && !outcome.aborted)) return false;
    if (!this.#o.resumeInterrupted) {
      this.#o.records.finish(task.id, "error", { error: "interrupted by restart (the embedded opencode stopped with the server)" });
      return false;
    }
    log.info("resuming an interrupted session", { taskId: task.id, sessionID: task.session_id });
    await this.#prompt(task, CONTINUE_PROMPT);
    return true;
  }

  /** Sends a running task's session another prompt (a continuation); a failure ends the task. */
  async continue(taskId: string, text: string): Promise<void> {
    const task = this.#o.records.get(taskId);
    if (!task || task.status !== "running" || !task.session_id) return;
    try {
      await this.#prompt(task, text);
    } catch (error) {
      this.#o.records.finish(taskId, "error", { error: `could not continue the session: ${(error as Error).message}` });
    }
  }

  /** Aborts a running task's session and ends the task with `status` (default error) and `reason`. */
  async stop(taskId: string, reason: string, status: Exclude<TerminalStatus, "completed"> = "error"): Promise<void> {
    const { records } = this.#o;
    const sessionID = records.get(taskId)?.session_id;
    this.#stopping.add(taskId);
    try {
      // An abort sent before opencode has taken the prompt in flight finds no run, and the prompt then starts
      // one: so abort only once opencode has answered it (the task stays running, holding its slot, meanwhile).
      const prompting = this.#prompting.get(taskId);
      if (prompting) await prompting.catch(() => undefined);
      if (sessionID) {
        this.#follower.markAborting(sessionID);
        // The watch keeps it stopped (see StoppedSessions).
        await this.#stopped.abort(sessionID);
      }
      records.finish(taskId, status, { error: reason });
    } finally {
      this.#stopping.delete(taskId);
    }
  }

  #ended(taskId: string): boolean {
    const task = this.#o.records.get(taskId);
    return !task || isTerminal(task.status);
  }
}
