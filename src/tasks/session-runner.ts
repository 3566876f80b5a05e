import type { OpencodeApi } from "../opencode/client.js";
import type { EventWatcher } from "../opencode/event-watcher.js";
import { outcomeOf } from "../opencode/transcript.js";
import { log } from "../log.js";
import type { SessionFollower } from "./follower.js";
import { isTerminal, type Task, type TerminalStatus } from "./task.js";
import { formatMs } from "./task-text.js";

/** The parts of the task manager a job needs. */
export interface RunnerTasks {
  get(id: string): Task | undefined;
  markRunning(id: string): boolean;
  markSession(id: string, sessionID: string): void;
  markPrompted(id: string): void;
  finish(id: string, status: TerminalStatus, fields: { result?: string | null; error?: string | null }): boolean;
  waitForTerminal(id: string, timeoutMs: number): Promise<Task | undefined>;
}

export interface SessionRunnerOptions {
  api: OpencodeApi;
  watcher: EventWatcher;
  follower: SessionFollower;
  tasks: RunnerTasks;
  disabledTools: { always: Record<string, boolean>; atMaxDepth: Record<string, boolean> };
  /** Tasks this deep get this server's tools switched off too (they may not launch deeper). */
  maxDepth: number;
  /** The opencode was spawned by this server (its sessions do not survive our exit). */
  embedded: boolean;
  /** After a restart, send interrupted sessions a short continue prompt instead of ending them. */
  resumeInterrupted: boolean;
}

export const CONTINUE_PROMPT =
  "Your previous run was interrupted by a restart. Continue the task from where you left off and finish it.";

/**
 * The body of a task's queued job: create the session, prompt it, then hold the agent's slot until the
 * task is terminal. The job settles exactly once, when the task ends, whoever ends it. A job for a task
 * recovered after a restart picks up from the last step the store recorded.
 */
export class SessionRunner {
  readonly #o: SessionRunnerOptions;
  /** Tasks being stopped: aborts in flight, the terminal state not yet stored. */
  readonly #stopping = new Set<string>();

  constructor(options: SessionRunnerOptions) {
    this.#o = options;
  }

  /** A queued task's job: it has a slot now. */
  async run(taskId: string): Promise<void> {
    if (!this.#o.tasks.markRunning(taskId)) return;
    await this.#drive(taskId, false);
  }

  /** A task that was running when the previous server stopped: its job re-takes the slot. */
  async resume(taskId: string): Promise<void> {
    await this.#drive(taskId, true);
  }

  async #drive(taskId: string, recovered: boolean): Promise<void> {
    const { api, tasks, follower } = this.#o;
    let task = tasks.get(taskId);
    if (!task || isTerminal(task.status)) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      if (task.session_id === null) {
        const sessionID = await api.createSession({
          title: `${task.description} (@${task.agent} background)`,
          ...(task.parent_session_id ? { parentID: task.parent_session_id } : {}),
        });
        follower.follow(taskId, sessionID);
        tasks.markSession(taskId, sessionID);
        task = tasks.get(taskId)!;
      } else {
        follower.follow(taskId, task.session_id);
      }
      const sessionID = task.session_id!;
      await this.#o.watcher.ready();
      if (this.#ended(taskId)) {
        // Cancelled while the session was being set up: it never gets our prompt.
        if (task.prompted_at === null) await api.deleteSession(sessionID).catch(() => undefined);
        return;
      }
      let resumed = false;
      if (task.prompted_at === null && !(recovered && (await this.#promptWasTaken(sessionID)))) {
        await this.#prompt(task, task.prompt);
      } else if (recovered) {
        if (task.prompted_at === null) tasks.markPrompted(taskId);
        if (task.embedded) resumed = await this.#afterInterruption(task);
      }
      task = tasks.get(taskId)!;
      if (task.timeout_ms !== null && !isTerminal(task.status)) {
        const ms = task.timeout_ms;
        const left = Math.max(0, (task.prompted_at ?? Date.now()) + ms - Date.now());
        timer = setTimeout(() => void this.stop(taskId, "error", `timed out after ${formatMs(ms)} (timeout_ms ${ms})`), left);
      }
      // Whatever happened while we were down: finished, failed, gone, or still busy (then events follow).
      if (recovered && !resumed) await follower.settle(sessionID);
      while (!this.#ended(taskId)) await tasks.waitForTerminal(taskId, 60_000);
    } catch (error) {
      tasks.finish(taskId, "error", { error: error instanceof Error ? error.message : String(error) });
    } finally {
      clearTimeout(timer);
      const sessionID = tasks.get(taskId)?.session_id;
      if (sessionID) {
        follower.unfollow(sessionID);
        // An abort that has not reached opencode yet: the session may still run, so the slot stays taken.
        await follower.stopped.whenStopped(sessionID);
      }
    }
  }

  async #prompt(task: Task, text: string): Promise<void> {
    const sessionID = task.session_id!;
    await this.#o.api.prompt(sessionID, {
      text,
      agent: task.agent,
      ...(task.model ? { model: task.model } : {}),
      tools:
        task.depth >= this.#o.maxDepth
          ? { ...this.#o.disabledTools.always, ...this.#o.disabledTools.atMaxDepth }
          : this.#o.disabledTools.always,
    });
    this.#o.tasks.markPrompted(task.id);
    // Stopped while the prompt was in flight: that abort found no run, so stop the run the prompt started.
    if (this.#ended(task.id) || this.#stopping.has(task.id)) await this.#o.follower.stopped.abort(sessionID);
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
      this.#o.tasks.finish(task.id, "error", { error: "interrupted by restart (the embedded opencode stopped with the server)" });
      return false;
    }
    log.info("resuming an interrupted session", { taskId: task.id, sessionID: task.session_id });
    await this.#prompt(task, CONTINUE_PROMPT);
    return true;
  }

  /** Sends a running task's session another prompt (a continuation); a failure ends the task. */
  async continue(taskId: string, text: string): Promise<void> {
    const task = this.#o.tasks.get(taskId);
    if (!task || task.status !== "running" || !task.session_id) return;
    try {
      await this.#prompt(task, text);
    } catch (error) {
      this.#o.tasks.finish(taskId, "error", { error: `could not continue the session: ${(error as Error).message}` });
    }
  }

  /** Aborts a running task's session and ends the task with `status` and `reason`. */
  async stop(taskId: string, status: Exclude<TerminalStatus, "completed">, reason: string): Promise<void> {
    const { tasks, follower } = this.#o;
    const sessionID = tasks.get(taskId)?.session_id;
    this.#stopping.add(taskId);
    try {
      if (sessionID) {
        follower.markAborting(sessionID);
        // The follower's watch keeps it stopped (see StoppedSessions).
        await follower.stopped.abort(sessionID);
      }
      tasks.finish(taskId, status, { error: reason });
    } finally {
      this.#stopping.delete(taskId);
    }
  }

  #ended(taskId: string): boolean {
    const task = this.#o.tasks.get(taskId);
    return !task || isTerminal(task.status);
  }
}
