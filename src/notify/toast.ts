import type { OpencodeApi } from "../opencode/client.js";
import { log } from "../log.js";
import type { TaskChange, TaskChanges } from "../tasks/records.js";
import { isTerminal } from "../tasks/task.js";
import { taskSentence } from "../tasks/task-text.js";

const VARIANT = { completed: "success", error: "error", cancelled: "warning" } as const;

/** A toast in opencode's TUI (if one is attached) when a task ends. Best effort: never retried, never fatal. */
export class ToastNotifier {
  readonly #changes: TaskChanges;
  readonly #listener: (change: TaskChange) => void;

  constructor(api: OpencodeApi, changes: TaskChanges) {
    this.#changes = changes;
    this.#listener = ({ task }) => {
      if (!isTerminal(task.status)) return;
      const toast = { title: `Background task ${task.status}`, message: taskSentence(task), variant: VARIANT[task.status] };
      // After the MCP clients are told (listeners of the same change): starting a request takes a while.
      setImmediate(() => {
        api
          .showToast(toast)
          .catch((error: unknown) => log.debug("toast not shown", { taskId: task.id, error: String(error) }));
      });
    };
    changes.on("change", this.#listener);
  }

  close(): void {
    this.#changes.off("change", this.#listener);
  }
}
