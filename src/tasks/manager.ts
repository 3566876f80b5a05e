import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { OpencodeApi } from "../opencode/client.js";
import { EventWatcher, type EventWatcherHandlers } from "../opencode/event-watcher.js";
import { CallerDetector, type CallerDetection, type OurTool } from "../opencode/caller-detector.js";
import { log } from "../log.js";
import { AgentQueues, type ConcurrencyLimits } from "./agent-queues.js";
import { SessionFollower } from "./follower.js";
import { DEFAULT_POLICY, type TaskPolicy } from "./policy.js";
import { SessionRunner } from "./session-runner.js";
import { clip } from "../opencode/transcript.js";
import type { ListOptions, OutboxMessage, TaskStore } from "./store.js";
import {
  createTask,
  isTerminal,
  transition,
  type ModelRef,
  type Task,
  type TaskProgress,
  type TaskStatus,
  type TerminalStatus,
} from "./task.js";

/** Something the caller got wrong; the message says what and what is allowed. */
export class TaskInputError extends Error {
  override name = "TaskInputError";
}

/**
 * What changed about a task: `task.<status>` for status changes, `task.retrying` when the provider fails
 * and opencode retries, else `task.session` / `task.progress`.
 */
export interface TaskChange {
  event: `task.${TaskStatus}` | "task.session" | "task.progress" | "task.retrying";
  task: Task;
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
  store: TaskStore;
  concurrency: ConcurrencyLimits;
  /** Tools background sessions must not call (opencode's `task`) and, at the deepest level, this server's own. */
  disabledTools: { always: Record<string, boolean>; atMaxDepth: Record<string, boolean> };
  /** Safety sweep period: one status request for all running sessions. */
  sweepIntervalMs?: number;
  /** The opencode was spawned by this server (its sessions die with us). */
  embedded?: boolean;
  /** After a restart, continue interrupted embedded sessions instead of ending them. */
  resumeInterrupted?: boolean;
  /** The outbox message a terminal state carries (written in the same transaction), if any. */
  outboxFor?: (task: Task) => OutboxMessage | undefined;
  /** Finished tasks kept: pruned in the background, oldest first. */
  retention?: { maxAgeDays: number; maxTasks: number };
  /** Timeouts, guards and limits; see TaskPolicy. */
  policy?: TaskPolicy;
  /** Also told of every opencode event and (re)connection, e.g. to learn sessions' agent and model. */
  events?: EventWatcherHandlers;
}

const MAX_PROMPT_BYTES = 1024 * 1024;
export const LOCAL_OWNER = "local";

/**
 * The task manager: launches, reads, waits for and cancels tasks. Data flows one way: a launch is
 * queued per agent, its job runs the session, opencode events become task changes, and each change is
 * stored and then emitted as `change` for the notifiers.
 */
export class TaskManager extends EventEmitter<{ change: [TaskChange] }> {
  readonly api: OpencodeApi;
  readonly #store: TaskStore;
  readonly #queues: AgentQueues;
  readonly #follower: SessionFollower;
  readonly #runner: SessionRunner;
  readonly #watcher: EventWatcher;
  readonly #callers = new CallerDetector();
  /** Per queued task: aborting it takes the job out of its queue before it ever runs. */
  readonly #dequeue = new Map<string, AbortController>();
  readonly #terminalWaiters = new Map<string, Set<() => void>>();
  /**
   * Queued and running tasks as last committed: the store stays the truth (every change is written
   * through), but the many reads while tasks run do not parse JSON from SQLite each time.
   */
  readonly #unfinished = new Map<string, Task>();
  readonly #sweepMs: number;
  readonly #embedded: boolean;
  readonly #outboxFor: (task: Task) => OutboxMessage | undefined;
  readonly #retention: { maxAgeDays: number; maxTasks: number };
  readonly #policy: TaskPolicy;
  /** The agent list, refetched when a launch names an agent it does not have (or after a minute). */
  #agents: { names: string[]; at: number } | null = null;
  #sweep: NodeJS.Timeout | undefined;
  #prune: NodeJS.Timeout | undefined;

  constructor(options: TaskManagerOptions) {
    super();
    this.api = options.api;
    this.#store = options.store;
    this.#queues = new AgentQueues(options.concurrency);
    this.#sweepMs = options.sweepIntervalMs ?? Math.min(30_000, (options.policy ?? DEFAULT_POLICY).stallMs);
    this.#embedded = options.embedded ?? false;
    this.#outboxFor = options.outboxFor ?? (() => undefined);
    this.#retention = options.retention ?? { maxAgeDays: 7, maxTasks: 10_000 };
    this.#policy = options.policy ?? DEFAULT_POLICY;
    const sink = {
      get: (id: string) => this.get(id),
      progress: (id: string, progress: TaskProgress, retrying?: boolean) =>
        this.#update(id, { progress }, retrying ? "task.retrying" : "task.progress"),
      finish: (id: string, status: TerminalStatus, fields: { result?: string | null; error?: string | null }) =>
        this.finish(id, status, fields),
      stop: (id: string, reason: string) => void this.#runner.stop(id, "error", reason),
      prompt: (id: string, text: string) => this.#runner.continue(id, text),
    };
    this.#follower = new SessionFollower(this.api, sink, this.#policy);
    this.#watcher = new EventWatcher(this.api, {
      onEvent: (event) => {
        this.#callers.onEvent(event);
        this.#follower.onEvent(event);
        options.events?.onEvent(event);
      },
      onConnected: (reconnect) => {
        options.events?.onConnected(reconnect);
        if (!reconnect) return;
        // Events were missed while disconnected. A restarted opencode may not answer everything at once,
        // so look again shortly after rather than waiting for the next sweep.
        void this.#resync(true);
        setTimeout(() => void this.#resync(true), 2_000).unref();
      },
    });
    this.#runner = new SessionRunner({
      api: this.api,
      watcher: this.#watcher,
      follower: this.#follower,
      disabledTools: options.disabledTools,
      tasks: this,
      embedded: this.#embedded,
      resumeInterrupted: options.resumeInterrupted ?? false,
      maxDepth: this.#policy.maxDepth,
    });
  }

  /**
   * Starts following opencode and picks up where the previous server left off: running tasks re-take
   * their agent's slots first (so limits hold across the restart), then queued tasks are queued again
   * in their original order.
   */
  start(): { resumed: number; requeued: number } {
    this.#watcher.start();
    this.#sweep = setInterval(() => void this.#resync(false), this.#sweepMs);
    this.#sweep.unref();
    this.#pruneFinished();
    this.#prune = setInterval(() => this.#pruneFinished(), 60 * 60 * 1000);
    this.#prune.unref();
    const unfinished = this.#store.unfinished();
    for (const task of unfinished) this.#unfinished.set(task.id, task);
    const running = unfinished.filter((t) => t.status === "running");
    const queued = unfinished.filter((t) => t.status === "queued");
    for (const task of running) this.#enqueue(task, () => this.#runner.resume(task.id));
    for (const task of queued) this.#enqueue(task, () => this.#runner.run(task.id));
    return { resumed: running.length, requeued: queued.length };
  }

  stop(): void {
    clearInterval(this.#sweep);
    clearInterval(this.#prune);
    this.#watcher.stop();
  }

  /** Waits for the first event-stream connection (so no early event is missed). */
  ready(timeoutMs?: number): Promise<void> {
    return this.#watcher.ready(timeoutMs);
  }

  /** Validates, stores and queues a task; returns at once, never waiting for a slot or the model. */
  async launch(input: LaunchInput): Promise<Task> {
    const model = parseModel(input.model);
    if (Buffer.byteLength(input.prompt, "utf8") > MAX_PROMPT_BYTES) {
      throw new TaskInputError(`prompt is ${Buffer.byteLength(input.prompt, "utf8")} bytes; at most ${MAX_PROMPT_BYTES} bytes (1 MB) are allowed`);
    }
    await this.#checkAgent(input.agent);
    const waiting = this.#queues.waiting(input.agent);
    if (waiting >= this.#policy.maxQueuedPerAgent) {
      throw new TaskInputError(
        `agent "${input.agent}" already has ${waiting} tasks waiting for a slot; at most ${this.#policy.maxQueuedPerAgent} may wait (limits.maxQueuedPerAgent). Try again when some have finished.`,
      );
    }
    if (input.parent_session_id && !(await this.api.sessionExists(input.parent_session_id))) {
      throw new TaskInputError(`parent_session_id "${input.parent_session_id.slice(0, 80)}" is not a session of the opencode server at ${this.api.url}`);
    }
    const parentTask = input.parent_session_id ? this.#store.findBySession(input.parent_session_id) : undefined;
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
    this.#enqueue(task, () => this.#runner.run(task.id), () => this.#commit(task, "task.queued"));
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
    return this.#unfinished.get(id) ?? this.#store.get(id);
  }

  list(options?: ListOptions): Task[] {
    return this.#store.list(options);
  }

  /**
   * Which opencode session is calling `tool` with `args`, when opencode is the MCP client (it sends no
   * session id; its event stream shows the call).
   */
  detectCaller(tool: OurTool, args: Record<string, unknown>, waitMs?: number): Promise<CallerDetection> {
    return this.#callers.detect(tool, args, waitMs);
  }

  /** The tasks launched from `sessionID`, from their sessions, and so on; newest first. */
  descendants(sessionID: string): Task[] {
    return this.#store.descendantsOf(sessionID);
  }

  queuePosition(task: Task): number | null {
    return task.status === "queued" ? this.#queues.position(task.agent, task.id) : null;
  }

  /** Resolves when the task is terminal or `timeoutMs` has passed, whichever is first. */
  async waitForTerminal(id: string, timeoutMs: number, signal?: AbortSignal): Promise<Task | undefined> {
    const task = this.get(id);
    if (!task || isTerminal(task.status)) return task;
    await new Promise<void>((resolve) => {
      const waiters = this.#terminalWaiters.get(id) ?? new Set();
      this.#terminalWaiters.set(id, waiters);
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener("abort", done, { once: true });
      waiters.add(done);
    });
    return this.get(id);
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
      this.finish(id, "cancelled", { error: "cancelled before it started" });
      this.#dequeue.get(id)?.abort(new Error("cancelled"));
      return null;
    }
    await this.#runner.stop(id, "cancelled", "cancelled by request");
    return null;
  }

  /** Ends a task (once: a terminal task never changes again). Returns whether this call ended it. */
  finish(id: string, status: TerminalStatus, fields: { result?: string | null; error?: string | null }): boolean {
    const task = this.get(id);
    const result = fields.result === undefined || fields.result === null ? fields.result : clip(fields.result, this.#policy.maxResultChars);
    const next = task && transition(task, status, Date.now(), { ...fields, ...(result === undefined ? {} : { result }) });
    if (!next) return false;
    this.#commit(next, `task.${status}`, this.#outboxFor(next));
    for (const resolve of this.#terminalWaiters.get(id) ?? []) resolve();
    this.#terminalWaiters.delete(id);
    return true;
  }

  /** The job has a slot: the task is running from now on. False when it was cancelled while waiting. */
  markRunning(id: string): boolean {
    const task = this.get(id);
    const next = task && transition(task, "running", Date.now());
    if (!next) return false;
    this.#commit(next, "task.running");
    return true;
  }

  markSession(id: string, sessionID: string): void {
    this.#update(id, { session_id: sessionID, embedded: this.#embedded }, "task.session");
  }

  markPrompted(id: string): void {
    this.#update(id, { prompted_at: Date.now() }, "task.session");
  }

  #update(id: string, patch: Partial<Task>, event: TaskChange["event"]): void {
    const task = this.get(id);
    if (!task || isTerminal(task.status)) return;
    this.#commit({ ...task, ...patch }, event);
  }

  /** Store first, then announce: a notifier never tells of a state the store does not have. */
  #commit(task: Task, event: TaskChange["event"], outbox?: OutboxMessage): void {
    this.#store.put(task, outbox);
    if (isTerminal(task.status)) this.#unfinished.delete(task.id);
    else this.#unfinished.set(task.id, task);
    this.emit("change", { event, task });
  }

  #pruneFinished(): void {
    const { maxAgeDays, maxTasks } = this.#retention;
    try {
      const removed = this.#store.prune({ finishedBefore: Date.now() - maxAgeDays * 86_400_000, maxTasks });
      if (removed > 0) log.info("pruned finished tasks", { removed });
    } catch (error) {
      log.warn("pruning finished tasks failed", { error: String(error) });
    }
  }

  async #checkAgent(agent: string): Promise<void> {
    const fresh = this.#agents && Date.now() - this.#agents.at < 60_000;
    // With a cached list, a health check (cheap even while opencode is busy) still makes a launch fail at
    // once, naming the URL, when opencode is down.
    if (fresh && this.#agents!.names.includes(agent)) await this.api.health();
    else {
      const agents = await this.api.agents();
      this.#agents = { names: agents.filter((a) => !a.hidden).map((a) => a.name), at: Date.now() };
    }
    const usable = this.#agents!.names;
    if (!usable.includes(agent)) {
      throw new TaskInputError(`unknown agent "${agent.slice(0, 80)}"; the opencode server at ${this.api.url} has: ${usable.join(", ")}`);
    }
  }

  async #resync(all: boolean): Promise<void> {
    try {
      await this.#follower.resync(Date.now(), all);
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
