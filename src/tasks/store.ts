import type { Task } from "./task.js";

/**
 * Where tasks live. Every state change is written here before anyone is told about it,
 * so the backend (memory today, SQLite with the durability work) decides what survives a restart.
 */
export interface TaskStore {
  put(task: Task): void;
  get(id: string): Task | undefined;
  /** Newest first. */
  list(options?: { limit?: number; offset?: number }): Task[];
}

/** Keeps every task in memory, in creation order. */
export class MemoryTaskStore implements TaskStore {
  readonly #tasks = new Map<string, Task>();

  put(task: Task): void {
    this.#tasks.set(task.id, task);
  }

  get(id: string): Task | undefined {
    return this.#tasks.get(id);
  }

  list({ limit = Infinity, offset = 0 }: { limit?: number; offset?: number } = {}): Task[] {
    const newestFirst = [...this.#tasks.values()].reverse();
    return newestFirst.slice(offset, offset + limit);
  }
}
