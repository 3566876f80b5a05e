import type { CallerDetection, CallerDetector, OurTool } from "../opencode/caller-detector.js";
import type { SessionMessage } from "../opencode/client.js";
import { toTranscript, type TranscriptEntry } from "../opencode/transcript.js";
import type { LaunchInput, TaskManager } from "../tasks/manager.js";
import type { Task } from "../tasks/task.js";
import type { QueuePositions } from "./task-view.js";

/** Reads a session's messages (opencode's API does). */
export interface SessionMessages {
  messages(sessionID: string): Promise<SessionMessage[]>;
}

/** What every owner's view is built on; only OwnedTasks holds it. */
export interface TaskAccess {
  manager: TaskManager;
  /** Which opencode session makes a call, when opencode is the MCP client. */
  callers: CallerDetector;
  /** The messages of tasks' sessions, for transcripts. */
  sessions: SessionMessages;
}

/**
 * One owner's view of the tasks, the only way the MCP tools and resources reach them: another owner's
 * task is indistinguishable from one that does not exist. The owner is fixed per connection ("local" on
 * stdio, the token's owner over HTTP).
 */
export class OwnedTasks implements QueuePositions {
  readonly owner: string;
  readonly #access: TaskAccess;
  readonly #launchAs: <T>(launch: () => Promise<T>) => Promise<T>;

  /** `launchAs` wraps every launch (the push router uses it to learn which session launched a task). */
  constructor(access: TaskAccess, owner: string, launchAs: <T>(launch: () => Promise<T>) => Promise<T> = (launch) => launch()) {
    this.#access = access;
    this.owner = owner;
    this.#launchAs = launchAs;
  }

  launch(input: Omit<LaunchInput, "owner">): Promise<Task> {
    return this.#launchAs(() => this.#access.manager.launch({ ...input, owner: this.owner }));
  }

  get(id: string): Task | undefined {
    const task = this.#access.manager.get(id);
    return task?.owner === this.owner ? task : undefined;
  }

  /** Newest first. */
  list(options: { limit?: number; offset?: number } = {}): Task[] {
    return this.#access.manager.list({ ...options, owner: this.owner });
  }

  /** Tasks launched from `sessionID` and, recursively, from their sessions; newest first. */
  descendants(sessionID: string): Task[] {
    return this.#access.manager.descendants(sessionID).filter((task) => task.owner === this.owner);
  }

  /** Null when cancelled, else why not ("not found" for a task of another owner). */
  async cancel(id: string): Promise<string | null> {
    return this.get(id) ? this.#access.manager.cancel(id) : "not found";
  }

  async waitForTerminal(id: string, timeoutMs: number, signal?: AbortSignal): Promise<Task | undefined> {
    return this.get(id) ? this.#access.manager.waitForTerminal(id, timeoutMs, signal) : undefined;
  }

  queuePosition(task: Task): number | null {
    return this.#access.manager.queuePosition(task);
  }

  /** The task's session so far, bounded; undefined for an unknown task or one without a session yet. */
  async transcript(id: string): Promise<{ entries: TranscriptEntry[]; omitted: number } | undefined> {
    const sessionID = this.get(id)?.session_id;
    return sessionID ? toTranscript(await this.#access.sessions.messages(sessionID)) : undefined;
  }

  /** Which opencode session is calling `tool` with `args` (opencode sends no session id; its event stream shows the call). */
  detectCaller(tool: OurTool, args: Record<string, unknown>): Promise<CallerDetection> {
    return this.#access.callers.detect(tool, args);
  }
}
