// A bench-only model of the algorithm this project descends from (the oh-my-opencode background manager
// of 2026-01, see ../shared/reference/seed-manager.ts.txt), written from scratch against the opencode v2
// SDK so the benchmark can run it side by side with our server on the same workload. Its defining traits:
//   - launch blocks on a per-agent semaphore before it creates the session (a full agent blocks the caller);
//   - completion is found by polling: every 2 s one session.status() for all, then, task by task in
//     sequence, one session.messages() fetch per running task (progress) or a todo check when idle;
//   - the parent is notified 200 ms after completion is found, and the slot is released then too.
// One adaptation: opencode 1.18 leaves idle sessions out of session.status() (the seed looked for
// type "idle", which no longer appears), so "absent after having been seen busy" counts as idle.
// The seed also reacted to session.idle events delivered by its plugin host; this model is polling only,
// as specified for the baseline (issue 6). Not modelled: toasts' content, message-file lookup of the
// parent's model (opencode 1.18 keeps messages in SQLite, so the seed found none), session.deleted.
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { OpencodeClient } from "@opencode-ai/sdk/v2";

export const SEED_POLL_MS = 2_000;
const NOTIFY_DELAY_MS = 200;
const TASK_TTL_MS = 30 * 60 * 1000;

export interface SeedTask {
  id: string;
  sessionID: string;
  parentSessionID: string | undefined;
  description: string;
  agent: string;
  status: "running" | "completed" | "error";
  startedAt: number;
  completedAt?: number;
  /** Seen busy (or retrying) in a status poll: only then does absence mean idle. */
  seen: boolean;
  progress: { toolCalls: number; lastMessage?: string };
  error?: string;
}

/** A counting semaphore per agent whose release hands the slot straight to the longest waiter. */
class Semaphore {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(limit: number) {
    this.#free = limit;
  }

  acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }
}

export class SeedManager extends EventEmitter<{ completed: [SeedTask] }> {
  readonly tasks = new Map<string, SeedTask>();
  readonly #client: OpencodeClient;
  readonly #limits: { default: number; agents: Record<string, number> };
  readonly #semaphores = new Map<string, Semaphore>();
  readonly #pollMs: number;
  #poller: NodeJS.Timeout | undefined;

  /** `pollMs` is the seed's 2 s unless the bench's quick mode shortens it. */
  constructor(client: OpencodeClient, limits: { default: number; agents: Record<string, number> }, pollMs = SEED_POLL_MS) {
    super();
    this.#client = client;
    this.#limits = limits;
    this.#pollMs = pollMs;
  }

  async launch(input: { description: string; prompt: string; agent: string; parentSessionID?: string }): Promise<SeedTask> {
    const semaphore = this.#semaphore(input.agent);
    await semaphore.acquire(); // the blocking acquire: the launching call waits here for a slot
    const created = await this.#client.session
      .create({ parentID: input.parentSessionID, title: `Background: ${input.description}` })
      .catch((error: unknown) => ({ data: undefined, error }));
    if (!created.data) {
      semaphore.release();
      throw new Error(`Failed to create background session: ${JSON.stringify(created.error)}`);
    }
    const task: SeedTask = {
      id: `bg_${randomUUID().replaceAll("-", "").slice(0, 8)}`,
      sessionID: created.data.id,
      parentSessionID: input.parentSessionID,
      description: input.description,
      agent: input.agent,
      status: "running",
      startedAt: Date.now(),
      seen: false,
      progress: { toolCalls: 0 },
    };
    this.tasks.set(task.id, task);
    this.#startPolling();
    // Fire and forget, as the seed did: launch returns before opencode has accepted the prompt.
    void this.#client.session
      .promptAsync({
        sessionID: task.sessionID,
        agent: input.agent,
        tools: { task: false, background_task: false },
        parts: [{ type: "text", text: input.prompt }],
      })
      .then((result) => {
        if (result.error) throw new Error(JSON.stringify(result.error));
      })
      .catch((error: unknown) => {
        task.status = "error";
        task.error = String(error);
        task.completedAt = Date.now();
        semaphore.release();
        this.#notify(task, false);
      });
    return task;
  }

  stop(): void {
    clearInterval(this.#poller);
    this.#poller = undefined;
  }

  #semaphore(agent: string): Semaphore {
    let semaphore = this.#semaphores.get(agent);
    if (!semaphore) {
      semaphore = new Semaphore(this.#limits.agents[agent] ?? this.#limits.default);
      this.#semaphores.set(agent, semaphore);
    }
    return semaphore;
  }

  #startPolling(): void {
    if (this.#poller) return;
    // setInterval does not wait for a slow poll: with many tasks, polls overlap, as they did in the seed.
    this.#poller = setInterval(() => void this.#poll().catch(() => undefined), this.#pollMs);
    this.#poller.unref();
  }

  async #poll(): Promise<void> {
    this.#pruneStale();
    const { data: statuses = {} } = await this.#client.session.status();
    for (const task of this.tasks.values()) {
      if (task.status !== "running") continue;
      try {
        const status = statuses[task.sessionID];
        if (!status) {
          if (!task.seen) continue; // not started yet, or finished before any poll saw it (then never found)
          if (await this.#hasIncompleteTodos(task.sessionID)) continue;
          task.status = "completed";
          task.completedAt = Date.now();
          this.#notify(task, true);
          continue;
        }
        task.seen = true;
        const { data: messages } = await this.#client.session.messages({ sessionID: task.sessionID });
        for (const message of messages ?? []) {
          if (message.info.role !== "assistant") continue;
          for (const part of message.parts) {
            if (part.type === "tool") task.progress.toolCalls++;
            if (part.type === "text" && part.text) task.progress.lastMessage = part.text;
          }
        }
      } catch {
        // The seed logged and went on to the next task.
      }
    }
    if (![...this.tasks.values()].some((t) => t.status === "running")) this.stop();
  }

  async #hasIncompleteTodos(sessionID: string): Promise<boolean> {
    try {
      const { data: todos } = await this.#client.session.todo({ sessionID });
      return (todos ?? []).some((t) => t.status !== "completed" && t.status !== "cancelled");
    } catch {
      return false;
    }
  }

  /** Announces the end at once (the bench's stand-in for the seed's toast), then prompts the parent 200 ms later. */
  #notify(task: SeedTask, releaseSlot: boolean): void {
    this.emit("completed", task);
    void this.#client.tui.showToast({ title: "Background Task Completed", message: task.description, variant: "success" }).catch(() => undefined);
    const seconds = Math.floor(((task.completedAt ?? Date.now()) - task.startedAt) / 1000);
    const text =
      `[BACKGROUND TASK COMPLETED] Task "${task.description}" finished in ${seconds}s. ` +
      `Use background_output with task_id="${task.id}" to get results.`;
    setTimeout(() => {
      if (releaseSlot) this.#semaphore(task.agent).release();
      // The seed sent this even without a parent (and failed); the bench skips that pointless request.
      const prompt = task.parentSessionID
        ? this.#client.session.prompt({ sessionID: task.parentSessionID, parts: [{ type: "text", text }] })
        : Promise.resolve();
      void prompt.catch(() => undefined).finally(() => this.tasks.delete(task.id));
    }, NOTIFY_DELAY_MS);
  }

  #pruneStale(): void {
    const now = Date.now();
    for (const [id, task] of this.tasks) {
      if (now - task.startedAt <= TASK_TTL_MS) continue;
      if (task.status === "running") this.#semaphore(task.agent).release();
      this.tasks.delete(id);
    }
  }
}
