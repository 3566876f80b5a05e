import { randomBytes } from "node:crypto";
import type { OpencodeApi } from "../opencode/client.js";
import type { ModelRef } from "../opencode/client.js";
import type { EventWatcher } from "../opencode/event-watcher.js";
import { log } from "../log.js";
import { AgentQueues, type ConcurrencyLimits } from "./agent-queues.js";
import { LaunchChecks } from "./launch-checks.js";
import { DEFAULT_POLICY, type TaskPolicy } from "./policy.js";
import type { TaskRecords } from "./records.js";
import { SessionRunner } from "./session-runner.js";
import type { ListOptions } from "./store.js";
import { createTask, isTerminal, type Task } from "./task.js";

/** Something the caller got wrong; the message says what and what is allowed. */
export class TaskInputError extends Error {
  override name = "TaskInputError";
}

export interface LaunchInput {
  /** Who launches it; default "local" (the single user of a stdio server). */
  owner?: string;
  description: string;
  prompt: string;
  agent: string;
  model?: string;
  parent_session_id?: string;
  timeout_ms?: number;
}

export interface TaskManagerOptions {
  api: OpencodeApi;
  /** opencode's event stream; the manager starts and stops it (others, like the caller detector, may listen too). */
  events: EventWatcher;
  /** The one writer of task state; its `change` events are what the notifiers hear. */
  records: TaskRecords;
  concurrency: ConcurrencyLimits;
  /** Tools background sessions must not call (opencode's `task`) and, at the deepest level, this server's own. */
  disabledTools: { always: Record<string, boolean>; atMaxDepth: Record<string, boolean> };
  /** Safety sweep period: one status request for all running sessions. */
  sweepIntervalMs?: number;
  /** The opencode was spawned by this server (its sessions die with us). */
  embedded?: boolean;
  /** After a restart, continue interrupted embedded sessions instead of ending them. */
  resumeInterrupted?: boolean;
  /** Timeouts, guards and limits; see TaskPolicy. */
  policy?: TaskPolicy;
}

const MAX_PROMPT_BYTES = 1024 * 1024;
export const LOCAL_OWNER = "local";

/**
 * The task manager: launches, reads and cancels tasks. Data flows one way: a launch is queued per agent,
 * its job runs the session (SessionRunner), opencode events become task changes, and the records store
 * each change and then announce it to the notifiers. The manager writes no task state itself.
 */
export class TaskManager {
  readonly #api: OpencodeApi;
  readonly #records: TaskRecords;
  readonly #events: EventWatcher;
  readonly #queues: AgentQueues;
  readonly #runner: SessionRunner;
  /** Per queued task: aborting it takes the job out of its queue before it ever runs. */
  readonly #dequeue = new Map<string, AbortController>();
  readonly #sweepMs: number;
  readonly #policy: TaskPolicy;
  /** Agents, opencode's reachability and existing sessions, known without a round trip. */
  readonly #checks: LaunchChecks;
  #sweep: NodeJS.Timeout | undefined;

  constructor(options: TaskManagerOptions) {
    this.#api = options.api;
    this.#records = options.records;
    this.#events = options.events;
    this.#queues = new AgentQueues(options.concurrency);
    this.#checks = new LaunchChecks(options.api, options.events);
    this.#policy = options.policy ?? DEFAULT_POLICY;
    this.#sweepMs = options.sweepIntervalMs ?? Math.min(30_000, this.#policy.stallMs);
    this.#runner = new SessionRunner({
      api: this.#api,
      events: this.#events,
      records: this.#records,
      disabledTools: options.disabledTools,
      embedded: options.embedded ?? false,
      resumeInterrupted: options.resumeInterrupted ?? false,
      policy: this.#policy,
    });
    this.#events.on("connected", (reconnect) => {
      if (!reconnect) return;
      // Events were missed while disconnected. A restarted opencode may not answer everything at once,
      // so look again shortly after rather than waiting for the next sweep.
      void this.#resync(true);
      setTimeout(() => void this.#resync(true), 2_000).unref();
    });
  }

  /**
   * Starts following opencode and picks up where the previous server left off: running tasks re-take
   * their agent's slots first (so limits hold across the restart), then queued tasks are queued again
   * in their original order.
   */
  start(): { resumed: number; requeued: number } {
    this.#events.start();
    this.#checks.start();
    this.#sweep = setInterval(() => void this.#resync(false), this.#sweepMs);
    this.#sweep.unref();
    const unfinished = this.#records.unfinished();
    this.#runner.recover(unfinished);
    const running = unfinished.filter((t) => t.status === "running");
    const queued = unfinished.filter((t) => t.status === "queued");
    for (const task of running) this.#enqueue(task, () => this.#runner.resume(task.id));
    for (const task of queued) this.#enqueue(task, () => this.#runner.run(task.id));
    return { resumed: running.length, requeued: queued.length };
  }

  stop(): void {
    clearInterval(this.#sweep);
    this.#checks.stop();
    this.#events.stop();
  }

  /** Waits for the first event-stream connection (so no early event is missed). */
  ready(timeoutMs?: number): Promise<void> {
    return this.#events.ready(timeoutMs);
  }

  /** Validates, stores and queues a task; returns at once, never waiting for a slot or the model. */
  async launch(input: LaunchInput): Promise<Task> {
    const model = parseModel(input.model);
    if (Buffer.byteLength(input.prompt, "utf8") > MAX_PROMPT_BYTES) {
      throw new TaskInputError(`prompt is ${Buffer.byteLength(input.prompt, "utf8")} bytes; at most ${MAX_PROMPT_BYTES} bytes (1 MB) are allowed`);
    }
    await this.#checks.reachable();
    const agents = await this.#checks.agentsFor(input.agent);
    if (!agents.includes(input.agent)) {
      throw new TaskInputError(`unknown agent "${input.agent.slice(0, 80)}"; the opencode server at ${this.#api.url} has: ${agents.join(", ")}`);
    }
    const waiting = this.#queues.waiting(input.agent);
    if (waiting >= this.#policy.maxQueuedPerAgent) {
      throw new TaskInputError(
        `agent "${input.agent}" already has ${waiting} tasks waiting for a slot; at most ${this.#policy.maxQueuedPerAgent} may wait (limits.maxQueuedPerAgent). Try again when some have finished.`,
      );
    }
    if (input.parent_session_id && !(await this.#checks.sessionExists(input.parent_session_id))) {
      throw new TaskInputError(`parent_session_id "${input.parent_session_id.slice(0, 80)}" is not a session of the opencode server at ${this.#api.url}`);
    }
    const parentTask = input.parent_session_id ? this.#records.findBySession(input.parent_session_id) : undefined;
    const depth = parentTask ? parentTask.depth + 1 : 1;
    if (depth > this.#policy.maxDepth) {
      throw new TaskInputError(
        `this launch would be ${depth} levels deep (session ${input.parent_session_id} is itself background task ${parentTask!.id}); ` +
          `at most ${this.#policy.maxDepth} levels are allowed (limits.maxDepth)`,
      );
    }
    const task = createTask(
      newTaskId(),
      {
        owner: input.owner ?? LOCAL_OWNER,
        description: input.description,
        prompt: input.prompt,
        agent: input.agent,
        model,
        parent_session_id: input.parent_session_id ?? null,
        depth,
        timeout_ms: input.timeout_ms && input.timeout_ms > 0 ? input.timeout_ms : this.#policy.taskTimeoutMs || null,
      },
      Date.now(),
    );
    this.#enqueue(task, () => this.#runner.run(task.id), () => this.#records.add(task));
    return this.get(task.id) ?? task;
  }

  /** Queues the task's job on its agent; the job holds a slot until the task is terminal. */
  #enqueue(task: Task, job: () => Promise<void>, onQueued?: () => void): void {
    const dequeue = new AbortController();
    this.#dequeue.set(task.id, dequeue);
    this.#queues
      .add(task.agent, task.id, job, dequeue.signal, onQueued)
      .catch((error: unknown) => {
        // Only a dequeue rejects here (the job itself never throws); the task is already terminal.
        if (!dequeue.signal.aborted) log.error("task job failed", { taskId: task.id, error: String(error) });
      })
      .finally(() => this.#dequeue.delete(task.id));
  }

  get(id: string): Task | undefined {
    return this.#records.get(id);
  }

  list(options?: ListOptions): Task[] {
    return this.#records.list(options);
  }

  /** The tasks launched from `sessionID`, from their sessions, and so on; newest first. */
  descendants(sessionID: string): Task[] {
    return this.#records.descendants(sessionID);
  }

  queuePosition(task: Task): number | null {
    return task.status === "queued" ? this.#queues.position(task.agent, task.id) : null;
  }

  /** Resolves when the task is terminal, `timeoutMs` has passed or `signal` aborts, whichever is first. */
  waitForTerminal(id: string, timeoutMs: number, signal?: AbortSignal): Promise<Task | undefined> {
    return this.#records.waitForTerminal(id, timeoutMs, signal);
  }

  /**
   * Cancels a task: a queued one leaves its queue and never reaches the model; a running one has its
   * session aborted. Returns null when cancelled, or the reason it was skipped.
   */
  async cancel(id: string): Promise<string | null> {
    const task = this.get(id);
    if (!task) return "not found";
    if (isTerminal(task.status)) return `already ${task.status}`;
    if (task.status === "queued") {
      this.#records.finish(id, "cancelled", { error: "cancelled before it started" });
      this.#dequeue.get(id)?.abort(new Error("cancelled"));
      return null;
    }
    await this.#runner.stop(id, "cancelled by request", "cancelled");
    return null;
  }

  async #resync(all: boolean): Promise<void> {
    try {
      await this.#runner.resync(all);
    } catch (error) {
      log.warn("resync with opencode failed", { error: String(error) });
    }
  }
}

function parseModel(model: string | undefined): ModelRef | null {
  if (model === undefined) return null;
  const slash = model.indexOf("/");
  if (slash <= 0 || slash === model.length - 1) {
    throw new TaskInputError(`model "${model}" must be "provider/model", e.g. "anthropic/claude-sonnet-4"`);
  }
  return { providerID: model.slice(0, slash), modelID: model.slice(slash + 1) };
}

function newTaskId(): string {
  return `bg_${randomBytes(6).toString("hex")}`;
}
