import type { OpencodeApi } from "../opencode/client.js";
import type { EventWatcher } from "../opencode/event-watcher.js";
import { log } from "../log.js";
import type { SessionFollower } from "./follower.js";
import { isTerminal, type Task, type TerminalStatus } from "./task.js";

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
  disabledTools: Record<string, boolean>;
}

/**
 * The body of a task's queued job: create the session, prompt it, then hold the agent's slot until the
 * task is terminal. The job settles exactly once, when the task ends, whoever ends it.
 */
export class SessionRunner {
  readonly #o: SessionRunnerOptions;

  constructor(options: SessionRunnerOptions) {
    this.#o = options;
  }

  async run(taskId: string): Promise<void> {
    const { api, tasks, follower } = this.#o;
    if (!tasks.markRunning(taskId)) return;
    let sessionID: string | null = null;
    let timer: NodeJS.Timeout | undefined;
    try {
      const task = tasks.get(taskId)!;
      sessionID = await api.createSession({
        title: `${task.description} (@${task.agent} background)`,
        ...(task.parent_session_id ? { parentID: task.parent_session_id } : {}),
      });
      follower.follow(taskId, sessionID);
      tasks.markSession(taskId, sessionID);
      await this.#o.watcher.ready();
      if (this.#ended(taskId)) {
        // Cancelled while the session was being set up: it never gets our prompt.
        await api.deleteSession(sessionID).catch(() => undefined);
        return;
      }
      await api.prompt(sessionID, {
        text: task.prompt,
        agent: task.agent,
        ...(task.model ? { model: task.model } : {}),
        tools: this.#o.disabledTools,
      });
      tasks.markPrompted(taskId);
      if (task.timeout_ms !== null) {
        const ms = task.timeout_ms;
        timer = setTimeout(() => void this.stop(taskId, "error", `timed out after ${formatMs(ms)} (timeout_ms ${ms})`), ms);
      }
      while (!this.#ended(taskId)) await tasks.waitForTerminal(taskId, 60_000);
    } catch (error) {
      tasks.finish(taskId, "error", { error: error instanceof Error ? error.message : String(error) });
    } finally {
      clearTimeout(timer);
      if (sessionID) follower.unfollow(sessionID);
    }
  }

  /** Aborts a running task's session and ends the task with `status` and `reason`. */
  async stop(taskId: string, status: Exclude<TerminalStatus, "completed">, reason: string): Promise<void> {
    const { api, tasks, follower } = this.#o;
    const sessionID = tasks.get(taskId)?.session_id;
    if (sessionID) {
      follower.markAborting(sessionID);
      await api.abort(sessionID).catch((error: unknown) => {
        log.warn("could not abort a session", { taskId, sessionID, error: String(error) });
      });
    }
    tasks.finish(taskId, status, { error: reason });
  }

  #ended(taskId: string): boolean {
    const task = this.#o.tasks.get(taskId);
    return !task || isTerminal(task.status);
  }
}

export function formatMs(ms: number): string {
  if (ms < 1_000) return `${ms} ms`;
  const s = Math.round(ms / 100) / 10;
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s % 60)} s`;
}
