/**
 * A task manager over the simulated opencode, with the bookkeeping the property tests need: every task
 * launched, every change announced, and the invariants of issue 5 checked as things happen.
 *
 * Timers must be vitest fake timers (setTimeout/setInterval/Date) while a world runs: time only moves in
 * `advance()`, so a seed replays the same run. `setImmediate` stays real; the simulation settles on it.
 */
import { vi } from "vitest";
import { OpencodeUnreachableError } from "../../src/opencode/client.js";
import { EventWatcher } from "../../src/opencode/event-watcher.js";
import { TaskInputError, TaskManager } from "../../src/tasks/manager.js";
import { DEFAULT_POLICY, type TaskPolicy } from "../../src/tasks/policy.js";
import { TaskRecords, type TaskChange } from "../../src/tasks/records.js";
import { SqliteTaskStore } from "../../src/tasks/sqlite-store.js";
import { isTerminal, type TaskStatus } from "../../src/tasks/task.js";
import { SimulatedOpencode, type SimulatedOpencodeOptions } from "./simulated-opencode.js";

/** How long a step lets the system run: `n` event-loop turns (0 = none: the next step races it), or until quiet. */
export type Pause = number | "settle";

/**
 * Known bugs a property may tolerate so that it keeps checking everything else (each has its own
 * `it.fails` property that shows it). Tolerating one means: the orphaned opencode run it leaves is
 * stopped by the world the moment it appears, and counted in `tallies` as "known bug: <name>".
 * - "prompt-race": a task ends (cancel) while its prompt_async request is in flight; the abort finds no
 *   run, the prompt then starts one, and nobody aborts it.
 * - "abort-unreachable": a task is stopped (cancel, timeout, guard) while opencode is unreachable; the
 *   abort fails, the task ends anyway, and the session keeps running once opencode is back.
 * - "retry-abort": a task stopped (cancel, timeout) while opencode is in a retry back-off ends
 *   `completed` with an empty result: that abort has no error, and the follower's settle reads the
 *   aborted (completed, error-less) assistant message as an answer before the stop records its end.
 * - "launch-unreachable": with the agent list cached, a launch while opencode is unreachable succeeds
 *   (the task is queued) instead of failing fast with an error naming the URL.
 */
export type KnownBug = "prompt-race" | "abort-unreachable" | "retry-abort" | "launch-unreachable";

export interface WorldOptions {
  /** Agent -> concurrency limit. These agents are the visible ones in the simulation. */
  limits: Record<string, number>;
  tolerate?: readonly KnownBug[];
  sim?: SimulatedOpencodeOptions;
  policy?: Partial<TaskPolicy>;
  sweepIntervalMs?: number;
}

export interface TaskRecord {
  key: string;
  id: string;
  agent: string;
}

/** Log lines the code under test wrote at level error (collected by `captureLogs`). */
export const loggedErrors: string[] = [];

/** Swallows the JSON log lines of src/log.ts (thousands of runs would flood the output) and keeps the errors. */
export function captureLogs(): () => void {
  const write = process.stderr.write.bind(process.stderr);
  const spy = vi.spyOn(process.stderr, "write").mockImplementation(((chunk: unknown, ...rest: unknown[]) => {
    const text = typeof chunk === "string" ? chunk : Buffer.isBuffer(chunk) ? chunk.toString() : String(chunk);
    if (text.startsWith('{"time"')) {
      if (text.includes('"level":"error"')) loggedErrors.push(text.trim());
      return true;
    }
    return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write);
  return () => spy.mockRestore();
}

/** Outcome tallies across runs, for the report. */
export const tallies = new Map<string, number>();
export function tally(key: string, n = 1): void {
  tallies.set(key, (tallies.get(key) ?? 0) + n);
}

const TRACE = Boolean(process.env.WORLD_TRACE);
const TERMINAL_EVENTS = new Set<TaskChange["event"]>(["task.completed", "task.error", "task.cancelled"]);

export class TaskWorld {
  readonly sim: SimulatedOpencode;
  readonly store: SqliteTaskStore;
  readonly records: TaskRecords;
  readonly manager: TaskManager;
  readonly limits: Record<string, number>;
  readonly agents: string[];
  readonly tasks: TaskRecord[] = [];
  /** Each task's status, session and agent as last announced (cheaper than reading the store). */
  readonly status = new Map<string, TaskStatus>();
  readonly #sessionOf = new Map<string, string>();
  readonly #sessionTask = new Map<string, { id: string; key: string }>();
  readonly #running = new Map<string, number>();
  readonly terminalEvents = new Map<string, number>();
  readonly cancelledWhileQueued = new Set<string>();
  /** Broken invariants, as readable lines; a property asserts this stays empty. */
  readonly violations: string[] = [];
  /** Sessions opencode keeps running for a task that is already terminal. */
  readonly orphans: string[] = [];
  /** What happened, step by step (shown when a property fails). */
  readonly trace: string[] = [];
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #errorsAtStart: number;
  readonly #tolerate: ReadonlySet<KnownBug>;
  readonly #endedUnreachable = new Set<string>();
  #keys = 0;
  readonly #progressSeen = new Map<string, Set<string>>();
  #refilling = false;

  private constructor(options: WorldOptions) {
    this.limits = options.limits;
    this.agents = Object.keys(options.limits);
    this.sim = new SimulatedOpencode({ ...options.sim, agents: this.agents });
    this.store = new SqliteTaskStore(":memory:");
    const policy = { ...DEFAULT_POLICY, ...options.policy };
    this.records = new TaskRecords(this.store, { maxResultChars: policy.maxResultChars });
    this.manager = new TaskManager({
      api: this.sim,
      events: new EventWatcher(this.sim),
      records: this.records,
      concurrency: { default: 1, agents: { ...options.limits } },
      disabledTools: { always: { task: false }, atMaxDepth: {} },
      sweepIntervalMs: options.sweepIntervalMs ?? 500,
      policy,
    });
    this.#tolerate = new Set(options.tolerate ?? []);
    this.records.on("change", (change) => this.#onChange(change));
    this.sim.runGate = (sessionID) => this.#mayRun(sessionID);
    this.#errorsAtStart = loggedErrors.length;
  }

  static async create(options: WorldOptions): Promise<TaskWorld> {
    const world = new TaskWorld(options);
    world.manager.start();
    await world.sim.settle();
    await world.manager.ready(1);
    return world;
  }

  // ---- actions ----------------------------------------------------------------------------------

  /** Launches a task (not awaited: the launch races whatever comes next). `agent` may be any name. */
  launch(agent: string, timeoutMs?: number): void {
    const key = `t${++this.#keys}`;
    const unreachable = this.sim.unreachable;
    this.#track(
      this.manager.launch({ description: key, prompt: `prompt for ${key}`, agent, ...(timeoutMs ? { timeout_ms: timeoutMs } : {}) }).then(
        (task) => {
          this.tasks.push({ key, id: task.id, agent });
          if (!this.agents.includes(agent)) this.violations.push(`${key}: launch on agent "${agent}" that opencode does not list succeeded`);
          if (unreachable && this.sim.unreachable && this.#tolerate.has("launch-unreachable")) {
            tally("known bug: launch-unreachable");
          } else if (unreachable && this.sim.unreachable) {
            this.violations.push(`${key}: launch succeeded while opencode was unreachable (expected a fast error naming ${this.sim.url})`);
          }
          if (!this.#refilling) tally("launch.ok");
        },
        (error: unknown) => {
          if (error instanceof TaskInputError) {
            if (!error.message.includes(agent) || error.message.length < 20) this.violations.push(`${key}: unclear launch error: ${error.message}`);
            tally(`launch.refused: ${error.message.includes("waiting for a slot") ? "queue full" : "agent"}`);
          } else if (error instanceof OpencodeUnreachableError) {
            if (!error.message.includes(this.sim.url)) this.violations.push(`${key}: unreachable error without the URL: ${error.message}`);
            tally("launch.refused: unreachable");
          } else {
            this.violations.push(`${key}: launch threw ${String(error)}`);
          }
        },
      ),
    );
  }

  /** Cancels a task (not awaited); `twice` sends two cancels at once. */
  cancel(record: TaskRecord, twice: boolean): void {
    const before = this.store.get(record.id)?.status;
    if (before === "queued") this.cancelledWhileQueued.add(record.id);
    const one = (): Promise<void> =>
      this.manager.cancel(record.id).then(
        (skipped) => {
          const after = this.store.get(record.id)?.status;
          if (skipped === null && (!after || !isTerminal(after))) {
            this.violations.push(`${record.key}: cancel returned (cancelled) but the task is still ${after}`);
          }
          if (skipped !== null && !skipped.startsWith("already ")) this.violations.push(`${record.key}: cancel skipped: ${skipped}`);
          if (skipped !== null && before && !isTerminal(before) && !twice) {
            // Another cause may have ended it in between; that is fine, but count it.
            tally("cancel.lost race");
          }
          tally(skipped === null ? `cancel.${before}` : "cancel.skipped (terminal)");
        },
        (error: unknown) => {
          this.violations.push(`${record.key}: cancel threw ${String(error)}`);
        },
      );
    this.#track(one());
    if (twice) this.#track(one());
  }

  sessionOf(record: TaskRecord): string | null {
    return this.#sessionOf.get(record.id) ?? null;
  }

  /** Even indexes count from the newest task (where the action is), odd ones from the oldest. */
  pick(index: number): TaskRecord | undefined {
    const n = this.tasks.length;
    if (n === 0) return undefined;
    const at = Math.floor(index / 2) % n;
    return this.tasks[index % 2 === 0 ? n - 1 - at : at];
  }

  /** Lets the system run: a few event-loop turns, or until the simulation and every action are quiet. */
  async pause(pause: Pause): Promise<void> {
    if (pause === "settle") await this.settle();
    else await this.sim.turns(pause);
  }

  async settle(): Promise<void> {
    for (let round = 0; round < 100; round++) {
      await this.sim.settle();
      if (this.#inFlight.size === 0) return;
      await Promise.race(this.#inFlight);
    }
    throw new Error("actions did not finish");
  }

  /** Moves fake time forward in small steps, letting everything react in between. */
  async advance(ms: number): Promise<void> {
    const step = Math.max(1, Math.ceil(ms / 8));
    for (let done = 0; done < ms; done += step) {
      vi.advanceTimersByTime(Math.min(step, ms - done));
      await this.settle();
    }
  }

  note(line: string): void {
    this.trace.push(line);
    if (TRACE) console.log(line);
  }

  /** The violations with the trace, for an assertion message. */
  report(): string {
    return [...this.violations, ...this.orphans, "--- trace ---", ...this.trace.slice(-150)].join("\n");
  }

  // ---- invariants -------------------------------------------------------------------------------

  #onChange({ event, task }: TaskChange): void {
    const key = task.description;
    this.note(`· ${event} ${key} ${task.session_id ?? ""} ${task.error ?? task.result ?? ""}`);
    const previous = this.status.get(task.id);
    if (previous && isTerminal(previous)) this.violations.push(`${key}: "${event}" announced after it was ${previous}`);
    if (event !== "task.progress") {
      const stored = this.store.get(task.id);
      if (stored?.status !== task.status) this.violations.push(`${key}: "${event}" announced before it was stored (store has ${stored?.status})`);
    }
    if (task.session_id && !this.#sessionOf.has(task.id)) {
      this.#sessionOf.set(task.id, task.session_id);
      this.#sessionTask.set(task.session_id, { id: task.id, key });
    }
    if (previous !== task.status) {
      if (previous === "running") this.#running.set(task.agent, (this.#running.get(task.agent) ?? 1) - 1);
      if (task.status === "running") this.#running.set(task.agent, (this.#running.get(task.agent) ?? 0) + 1);
    }
    this.status.set(task.id, task.status);
    if (!this.#refilling) this.#tallyProgress(event, task);
    if (TERMINAL_EVENTS.has(event)) {
      const n = (this.terminalEvents.get(task.id) ?? 0) + 1;
      this.terminalEvents.set(task.id, n);
      if (n > 1) this.violations.push(`${key}: ${n} terminal events (latest ${event})`);
      if (!this.#refilling) tally(`end.${task.status}: ${reasonOf(task.error)}`);
      if (task.status === "completed") {
        const answers = (task.session_id && this.sim.answers.get(task.session_id)) || [];
        const answered = answers.some((a) => task.result === a || task.result?.startsWith(`${a}\n\nIncomplete todos:`));
        if (!answered && task.session_id && this.sim.abortedInBackoff.has(task.session_id) && this.#tolerate.has("retry-abort")) {
          tally("known bug: retry-abort");
        } else if (!answered) {
          this.violations.push(`${key}: completed with ${JSON.stringify(task.result)}, which its session never answered (${JSON.stringify(answers)})`);
        }
      }
      if (this.sim.unreachable) this.#endedUnreachable.add(task.id);
      const run = task.session_id ? this.sim.activeRuns().find((r) => r.sessionID === task.session_id) : undefined;
      if (run) this.#knownOrphan(task.id, run.sessionID, this.sim.unreachable ? "abort-unreachable" : "prompt-race");
    }
    if (event === "task.running") {
      const running = this.#running.get(task.agent) ?? 0;
      const limit = this.limits[task.agent] ?? 1;
      if (running > limit) this.violations.push(`${key}: ${running} tasks of agent ${task.agent} running at once (limit ${limit})`);
    }
  }

  /** A run about to start for a task that already ended is an orphan: tolerated ones never start. */
  #mayRun(sessionID: string): boolean {
    const task = this.#sessionTask.get(sessionID);
    const status = task && this.status.get(task.id);
    if (!task || !status || !isTerminal(status)) return true;
    const bug = this.#orphanBug(task.id);
    if (!this.#tolerate.has(bug)) return true;
    tally(`known bug: ${bug}`);
    this.note(`· [known bug ${bug}] ${task.key}: its run would start after it ended; dropped`);
    return false;
  }

  #orphanBug(taskId: string): KnownBug {
    return this.#endedUnreachable.has(taskId) ? "abort-unreachable" : "prompt-race";
  }

  #knownOrphan(taskId: string, sessionID: string, bug: KnownBug): void {
    if (!this.#tolerate.has(bug)) return;
    tally(`known bug: ${bug}`);
    this.note(`· [known bug ${bug}] ${taskId}: ended while opencode still runs ${sessionID}; aborted by the world`);
    this.sim.abortRun(sessionID);
  }

  #tallyProgress(event: TaskChange["event"], task: TaskChange["task"]): void {
    const seen = this.#progressSeen.get(task.id) ?? new Set<string>();
    this.#progressSeen.set(task.id, seen);
    const mark = (what: string): void => {
      if (!seen.has(what)) tally(`progress.${what}`);
      seen.add(what);
    };
    if (event === "task.retrying") mark("retrying");
    if (task.progress.permission) mark(`permission ${task.progress.permission.decision}`);
    if (task.progress.stalled_since) mark("stalled");
    if (task.progress.todo_continuations) mark(`todo continuation ${task.progress.todo_continuations}`);
    if (task.progress.incomplete_todos?.length) mark("completed with incomplete todos");
  }

  /**
   * Checks that hold at any moment. A task stopped while opencode was unreachable may leave its run going
   * until opencode answers again and the manager's abort retry gets through: that is checked strictly
   * (`strict`) only once the drain has restored opencode and given the retry time.
   */
  check(strict = false): void {
    for (const agent of this.agents) {
      const max = this.sim.maxRunning.get(agent) ?? 0;
      const limit = this.limits[agent] ?? 1;
      if (max > limit) this.#once(`opencode ran ${max} sessions of agent ${agent} at once (limit ${limit})`);
    }
    if (this.cancelledWhileQueued.size > 0) {
      const reached = new Set([...this.sim.createdTitles.map((t) => t.split(" ")[0]), ...this.sim.prompts.map((p) => p.text.slice("prompt for ".length))]);
      for (const id of this.cancelledWhileQueued) {
        const key = this.tasks.find((t) => t.id === id)?.key;
        if (key && reached.has(key)) this.#once(`${key}: cancelled while queued, yet it reached opencode`);
      }
    }
    for (const run of this.sim.activeRuns()) {
      const task = this.#sessionTask.get(run.sessionID);
      const status = task && this.status.get(task.id);
      const key = task?.key ?? run.title;
      if (task && status && isTerminal(status)) {
        if (!strict && this.#endedUnreachable.has(task.id)) continue;
        // A tolerated orphan not yet taken up is dropped by the run gate when it would start.
        if (run.phase === "pending" && this.#tolerate.has(this.#orphanBug(task.id))) continue;
        const line = `${key}: ${status}, but opencode is still running its session ${run.sessionID} (${run.phase})`;
        if (!this.orphans.includes(line)) this.orphans.push(line);
      }
    }
    const errors = loggedErrors.slice(this.#errorsAtStart);
    if (errors.length) this.#once(`logged an error: ${errors[0]}`);
  }

  #once(line: string): void {
    if (!this.violations.includes(line)) this.violations.push(line);
  }

  /**
   * The end of every run: opencode comes back, the stream reconnects (so a resync catches what was
   * lost), every run is finished, and time passes until every task is terminal.
   */
  async drain(): Promise<void> {
    await this.settle();
    this.check();
    this.sim.setUnreachable(false);
    this.sim.dropEvents(false);
    for (const agent of this.agents) this.sim.addAgent(agent);
    this.sim.reconnect();
    await this.settle();
    // A stream that ended, threw or went quiet reconnects after the watcher's back-off (250 ms doubling to 5 s).
    for (let wait = 0; wait < 20 && !this.sim.streamConnected; wait++) await this.advance(300);
    // Aborts that could not reach opencode are retried with back-off (1 s doubling to 30 s).
    for (let wait = 0; wait < 70 && this.#unreachableOrphans() > 0; wait++) await this.advance(1_000);
    this.check(true);
    if (this.sim.droppedEvents > 0) {
      // One more reconnect, so that the manager resyncs whatever it missed while events were lost.
      this.sim.disconnect("sdk");
      this.sim.reconnect();
      await this.settle();
    }
    for (let round = 0; round < 60 && !this.#allTerminal(); round++) {
      this.sim.takeUpAll();
      this.sim.finishAll("drained");
      await this.settle();
      if (!this.#allTerminal()) await this.advance(round < 10 ? 200 : 1_000);
    }
    this.check();
  }

  #unreachableOrphans(): number {
    return this.sim.activeRuns().filter((run) => {
      const task = this.#sessionTask.get(run.sessionID);
      const status = task && this.status.get(task.id);
      return task !== undefined && status !== undefined && isTerminal(status) && this.#endedUnreachable.has(task.id);
    }).length;
  }

  #allTerminal(): boolean {
    return this.#inFlight.size === 0 && this.tasks.every((t) => isTerminal(this.status.get(t.id) ?? "queued"));
  }

  /** After `drain()`: everything ended once, and every slot is free again. */
  async checkEnd(): Promise<void> {
    for (const task of this.tasks) {
      const stored = this.store.get(task.id);
      if (!stored || !isTerminal(stored.status)) this.violations.push(`${task.key}: still ${stored?.status} after the drain`);
      const n = this.terminalEvents.get(task.id) ?? 0;
      if (n !== 1) this.violations.push(`${task.key}: ${n} terminal events`);
    }
    // No orphan: every session opencode still holds is the one its task's record refers to.
    const referred = new Set(this.tasks.map((t) => this.store.get(t.id)?.session_id));
    for (const { sessionID, title } of this.sim.liveSessions()) {
      if (!referred.has(sessionID)) this.violations.push(`session ${sessionID} ("${title}") is left in opencode, and no task refers to it`);
    }
    // Every slot is free: as many new tasks as the limit start at once on each agent.
    const fresh: TaskRecord[] = [];
    const before = this.tasks.length;
    this.#refilling = true;
    for (const agent of this.agents) for (let i = 0; i < (this.limits[agent] ?? 1); i++) this.launch(agent);
    await this.settle();
    this.sim.takeUpAll();
    await this.settle();
    fresh.push(...this.tasks.slice(before));
    for (const task of fresh) {
      const status = this.store.get(task.id)?.status;
      if (status !== "running") this.violations.push(`${task.key}: a slot should be free for agent ${task.agent}, but the new task is ${status}`);
    }
    for (const agent of this.agents) {
      if (this.sim.running(agent) !== (this.limits[agent] ?? 1)) {
        this.violations.push(`agent ${agent}: ${this.sim.running(agent)} sessions running after the refill, expected ${this.limits[agent]}`);
      }
    }
    this.sim.finishAll("refill done");
    await this.settle();
    for (const task of fresh) {
      const stored = this.store.get(task.id);
      if (stored?.status !== "completed" || stored.result !== "refill done") {
        this.violations.push(`${task.key}: refill task ended ${stored?.status} (${stored?.error ?? stored?.result})`);
      }
    }
    this.check();
  }

  dispose(): void {
    this.manager.stop();
    vi.clearAllTimers();
    this.store.close();
  }

  #track(promise: Promise<unknown>): void {
    this.#inFlight.add(promise);
    void promise.finally(() => this.#inFlight.delete(promise));
  }
}

/** A task's error, with ids and numbers taken out, so that tallies group by kind. */
function reasonOf(error: string | null): string {
  if (!error) return "-";
  return error
    .replace(/ses_\w+/g, "<session>")
    .replace(/\d+(\.\d+)?/g, "N")
    .slice(0, 70);
}
