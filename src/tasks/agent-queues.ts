import PQueue from "p-queue";

/** Concurrency limits: how many sessions of each agent may run at once. */
export interface ConcurrencyLimits {
  /** Limit for agents not named in `agents`. */
  default: number;
  /** Per-agent overrides, by agent name. */
  agents: Record<string, number>;
}

/**
 * One p-queue per agent. A task's slot is the life of its job: the job starts when a slot is free and
 * the slot frees when the job settles, so nothing acquires or releases by hand.
 */
export class AgentQueues {
  readonly #limits: ConcurrencyLimits;
  readonly #queues = new Map<string, PQueue>();
  /** Task ids waiting for a slot, per agent, in queue order (p-queue is FIFO without priorities). */
  readonly #waiting = new Map<string, string[]>();

  constructor(limits: ConcurrencyLimits) {
    this.#limits = limits;
  }

  limit(agent: string): number {
    return this.#limits.agents[agent] ?? this.#limits.default;
  }

  /**
   * Queues `job` for `agent`. `dequeue` aborts the job while it waits (it is removed and never runs);
   * once the job has started, stopping it is the job's own business, so its slot is held until it settles.
   * Resolves when the job settles; rejects with the abort reason when dequeued. `onQueued` runs once the
   * task holds its place in line, before the job can start.
   */
  add(agent: string, taskId: string, job: () => Promise<void>, dequeue: AbortSignal, onQueued?: () => void): Promise<void> {
    const waiting = this.#waitingFor(agent);
    waiting.push(taskId);
    // Announced here, while the task has its place in line and before a free slot can start it.
    onQueued?.();
    const leave = (): void => {
      const at = waiting.indexOf(taskId);
      if (at !== -1) waiting.splice(at, 1);
    };
    // p-queue also races a running job against its signal and frees the slot on abort, before the job
    // settles. So the queue gets a signal of its own that only follows `dequeue` while the job waits.
    const whileWaiting = new AbortController();
    const onDequeue = (): void => {
      leave();
      whileWaiting.abort(dequeue.reason);
    };
    if (dequeue.aborted) onDequeue();
    else dequeue.addEventListener("abort", onDequeue, { once: true });
    return this.#queueFor(agent)
      .add(
        () => {
          dequeue.removeEventListener("abort", onDequeue);
          leave();
          return job();
        },
        { signal: whileWaiting.signal },
      )
      .finally(() => {
        dequeue.removeEventListener("abort", onDequeue);
        leave();
      });
  }

  /** 1 = next to start among the agent's waiting tasks; null when not waiting (or about to start: a slot is free). */
  position(agent: string, taskId: string): number | null {
    const at = this.#waiting.get(agent)?.indexOf(taskId) ?? -1;
    if (at === -1 || this.running(agent) < this.limit(agent)) return null;
    return at + 1;
  }

  running(agent: string): number {
    return this.#queues.get(agent)?.pending ?? 0;
  }

  waiting(agent: string): number {
    return this.#waiting.get(agent)?.length ?? 0;
  }

  #queueFor(agent: string): PQueue {
    let queue = this.#queues.get(agent);
    if (!queue) {
      queue = new PQueue({ concurrency: this.limit(agent) });
      this.#queues.set(agent, queue);
    }
    return queue;
  }

  #waitingFor(agent: string): string[] {
    let list = this.#waiting.get(agent);
    if (!list) {
      list = [];
      this.#waiting.set(agent, list);
    }
    return list;
  }
}
