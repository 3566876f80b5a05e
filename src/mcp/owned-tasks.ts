import type { LaunchInput, TaskManager } from "../tasks/manager.js";
import type { Task } from "../tasks/task.js";
import type { QueuePositions } from "./task-view.js";

/**
 * One owner's view of the task manager, the only way the MCP tools and resources reach tasks: another
 * owner's task is indistinguishable from one that does not exist. The owner is fixed per connection
 * ("local" on stdio, the token's owner over HTTP).
 */
export class OwnedTasks implements QueuePositions {
  readonly manager: TaskManager;
  readonly owner: string;
  readonly #launchAs: <T>(launch: () => Promise<T>) => Promise<T>;

  /** `launchAs` wraps every launch (the push router uses it to learn which session launched a task). */
  constructor(manager: TaskManager, owner: string, launchAs: <T>(launch: () => Promise<T>) => Promise<T> = (launch) => launch()) {
    this.manager = manager;
    this.owner = owner;
    this.#launchAs = launchAs;
  }

  launch(input: Omit<LaunchInput, "owner">): Promise<Task> {
    return this.#launchAs(() => this.manager.launch({ ...input, owner: this.owner }));
  }

  get(id: string): Task | undefined {
    const task = this.manager.get(id);
    return task?.owner === this.owner ? task : undefined;
  }

  /** Newest first. */
  list(options: { limit?: number; offset?: number } = {}): Task[] {
    return this.manager.list({ ...options, owner: this.owner });
  }

  /** Tasks launched from `sessionID` and, recursively, from their sessions; newest first. */
  descendants(sessionID: string): Task[] {
    return this.manager.descendants(sessionID).filter((task) => task.owner === this.owner);
  }

  /** Null when cancelled, else why not ("not found" for a task of another owner). */
  async cancel(id: string): Promise<string | null> {
    return this.get(id) ? this.manager.cancel(id) : "not found";
  }

  async waitForTerminal(id: string, timeoutMs: number, signal?: AbortSignal): Promise<Task | undefined> {
    return this.get(id) ? this.manager.waitForTerminal(id, timeoutMs, signal) : undefined;
  }

  queuePosition(task: Task): number | null {
    return this.manager.queuePosition(task);
  }
}
