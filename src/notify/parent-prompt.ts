import type { OpencodeApi } from "../opencode/client.js";
import { log } from "../log.js";
import type { TaskChange, TaskManager } from "../tasks/manager.js";
import { formatMs } from "../tasks/session-runner.js";
import { durationMs, isTerminal, type ModelRef, type Task } from "../tasks/task.js";

/**
 * When a task with a parent session ends, prompts that session with the outcome, so the model that
 * launched it learns without polling. The prompt names the parent's current agent and model (from its
 * latest user message); otherwise opencode would switch the parent to its default agent.
 */
export class ParentPrompter {
  readonly #api: OpencodeApi;
  readonly #manager: TaskManager;
  readonly #listener = (change: TaskChange): void => {
    if (isTerminal(change.task.status) && change.task.parent_session_id) void this.notify(change.task);
  };
  /** Sends in flight, so that callers (tests, shutdown) can wait for them. */
  readonly pending = new Set<Promise<void>>();

  constructor(api: OpencodeApi, manager: TaskManager) {
    this.#api = api;
    this.#manager = manager;
    manager.on("change", this.#listener);
  }

  close(): void {
    this.#manager.off("change", this.#listener);
  }

  notify(task: Task): Promise<void> {
    const sending = this.#send(task).finally(() => this.pending.delete(sending));
    this.pending.add(sending);
    return sending;
  }

  async #send(task: Task): Promise<void> {
    const parent = task.parent_session_id!;
    try {
      const context = await this.#parentContext(parent);
      await this.#api.prompt(parent, { text: parentPromptText(task), ...context });
      log.info("parent session prompted", { taskId: task.id, parent });
    } catch (error) {
      log.warn("could not prompt the parent session", { taskId: task.id, parent, error: String(error) });
    }
  }

  async #parentContext(sessionID: string): Promise<{ agent?: string; model?: ModelRef }> {
    const messages = await this.#api.messages(sessionID, 20);
    const lastUser = messages.map((m) => m.info).findLast((info) => info.role === "user");
    if (!lastUser || lastUser.role !== "user") return {};
    return { agent: lastUser.agent, model: { providerID: lastUser.model.providerID, modelID: lastUser.model.modelID } };
  }
}

export function parentPromptText(task: Task): string {
  const took = formatMs(durationMs(task, task.completed_at ?? Date.now()) ?? 0);
  const outcome =
    task.status === "completed"
      ? `completed in ${took}`
      : task.status === "error"
        ? `failed after ${took}: ${task.error}`
        : `was cancelled after ${took}${task.error ? ` (${task.error})` : ""}`;
  const preview = task.result ? `\nPreview: ${task.result.replace(/\s+/g, " ").slice(0, 300)}` : "";
  return (
    `[BACKGROUND TASK ${task.status.toUpperCase()}] Task ${task.id} "${task.description}" (agent ${task.agent}) ${outcome}.` +
    `${preview}\nRead the full output with background_output {"task_id": "${task.id}"}.`
  );
}
