import { log } from "../log.js";

/** Finished tasks kept: older ones, and the oldest beyond the count, are deleted. */
export interface Retention {
  maxAgeDays: number;
  maxTasks: number;
}

/** Where finished tasks are deleted (the task records). */
export interface FinishedTasks {
  prune(options: { finishedBefore: number; maxTasks: number }): number;
}

const HOUR_MS = 60 * 60 * 1000;

/** Prunes finished tasks now and then hourly, in the background. Returns a function that stops it. */
export function pruneFinishedTasks(tasks: FinishedTasks, retention: Retention): () => void {
  const prune = (): void => {
    try {
      const removed = tasks.prune({ finishedBefore: Date.now() - retention.maxAgeDays * 86_400_000, maxTasks: retention.maxTasks });
      if (removed > 0) log.info("pruned finished tasks", { removed });
    } catch (error) {
      log.warn("pruning finished tasks failed", { error: String(error) });
    }
  };
  prune();
  const timer = setInterval(prune, HOUR_MS);
  timer.unref();
  return () => clearInterval(timer);
}
