import { describe, expect, it } from "vitest";
import { AgentQueues, type ConcurrencyLimits } from "./agent-queues.js";

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: Error) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets p-queue's microtasks and any chained promise callbacks run. */
async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}

type Settlement = { kind: "resolved" } | { kind: "rejected"; error: unknown };

/**
 * Drives an AgentQueues with jobs whose ends the test controls, recording which jobs started, how many
 * of each agent ran at once (at most), and every settlement of every add() promise.
 */
class Harness {
  readonly queues: AgentQueues;
  readonly started: string[] = [];
  readonly settled = new Map<string, Settlement[]>();
  readonly #active = new Map<string, number>();
  readonly #maxActive = new Map<string, number>();
  readonly #jobs = new Map<string, Deferred>();
  readonly #controllers = new Map<string, AbortController>();
  readonly #adds = new Map<string, Promise<void>>();

  constructor(limits: ConcurrencyLimits) {
    this.queues = new AgentQueues(limits);
  }

  add(agent: string, taskId: string, dequeue = new AbortController()): Promise<void> {
    const job = deferred();
    this.#jobs.set(taskId, job);
    this.#controllers.set(taskId, dequeue);
    this.settled.set(taskId, []);
    const added = this.queues.add(
      agent,
      taskId,
      async () => {
        this.started.push(taskId);
        const now = (this.#active.get(agent) ?? 0) + 1;
        this.#active.set(agent, now);
        this.#maxActive.set(agent, Math.max(this.#maxActive.get(agent) ?? 0, now));
        try {
          await job.promise;
        } finally {
          this.#active.set(agent, (this.#active.get(agent) ?? 1) - 1);
        }
      },
      dequeue.signal,
    );
    added.then(
      () => this.settled.get(taskId)!.push({ kind: "resolved" }),
      (error: unknown) => this.settled.get(taskId)!.push({ kind: "rejected", error }),
    );
    this.#adds.set(taskId, added);
    return added;
  }

  finish(taskId: string): void {
    this.#jobs.get(taskId)!.resolve();
  }

  fail(taskId: string, error: Error): void {
    this.#jobs.get(taskId)!.reject(error);
  }

  dequeue(taskId: string, reason: unknown = new Error(`dequeued ${taskId}`)): void {
    this.#controllers.get(taskId)!.abort(reason);
  }

  active(agent: string): number {
    return this.#active.get(agent) ?? 0;
  }

  maxActive(agent: string): number {
    return this.#maxActive.get(agent) ?? 0;
  }

  positions(agent: string, ids: string[]): Array<number | null> {
    return ids.map((id) => this.queues.position(agent, id));
  }

  /** Waits for every add() to settle (rejections swallowed here; they are recorded in `settled`). */
  async drain(): Promise<void> {
    await Promise.allSettled(this.#adds.values());
    await flush();
  }
}

describe("AgentQueues limits", () => {
  it("uses the per-agent limit when one is set, the default otherwise", () => {
    const queues = new AgentQueues({ default: 3, agents: { explore: 1, general: 7 } });
    expect(queues.limit("explore")).toBe(1);
    expect(queues.limit("general")).toBe(7);
    expect(queues.limit("build")).toBe(3);
  });

  it("never runs more of one agent than its limit, and runs up to it", async () => {
    const h = new Harness({ default: 5, agents: { explore: 2 } });
    const ids = ["a", "b", "c", "d", "e"];
    for (const id of ids) void h.add("explore", id);
    await flush();
    expect(h.started).toEqual(["a", "b"]);
    expect(h.queues.running("explore")).toBe(2);
    expect(h.queues.waiting("explore")).toBe(3);

    // Finish them one at a time: each end starts exactly one more.
    h.finish("a");
    await flush();
    expect(h.started).toEqual(["a", "b", "c"]);
    h.finish("b");
    h.finish("c");
    await flush();
    expect(h.started).toEqual(["a", "b", "c", "d", "e"]);
    h.finish("d");
    h.finish("e");
    await h.drain();
    expect(h.maxActive("explore")).toBe(2);
    expect(h.queues.running("explore")).toBe(0);
    expect(h.queues.waiting("explore")).toBe(0);
  });

  it("applies the default limit to agents without an override", async () => {
    const h = new Harness({ default: 3, agents: { explore: 1 } });
    for (const id of ["g1", "g2", "g3", "g4", "g5"]) void h.add("general", id);
    await flush();
    expect(h.active("general")).toBe(3);
    expect(h.queues.running("general")).toBe(3);
    expect(h.queues.waiting("general")).toBe(2);
    for (const id of ["g1", "g2", "g3", "g4", "g5"]) {
      h.finish(id);
      await flush();
    }
    await h.drain();
    expect(h.maxActive("general")).toBe(3);
    expect(h.started).toEqual(["g1", "g2", "g3", "g4", "g5"]);
  });

  it("keeps agents independent: a full agent does not hold back another", async () => {
    const h = new Harness({ default: 2, agents: { explore: 1 } });
    void h.add("explore", "e1");
    void h.add("explore", "e2");
    void h.add("general", "g1");
    void h.add("general", "g2");
    void h.add("general", "g3");
    await flush();
    expect(h.started.sort()).toEqual(["e1", "g1", "g2"]);
    expect(h.queues.waiting("explore")).toBe(1);
    expect(h.queues.waiting("general")).toBe(1);

    // Freeing a general slot starts a general job, not the waiting explore job.
    h.finish("g1");
    await flush();
    expect(h.started).toContain("g3");
    expect(h.started).not.toContain("e2");
    expect(h.queues.position("explore", "e2")).toBe(1);

    h.finish("e1");
    await flush();
    expect(h.started).toContain("e2");
    for (const id of ["e2", "g2", "g3"]) h.finish(id);
    await h.drain();
    expect(h.maxActive("explore")).toBe(1);
    expect(h.maxActive("general")).toBe(2);
  });

  it("frees the slot of a job that fails, and add() rejects with its error", async () => {
    const h = new Harness({ default: 1, agents: {} });
    void h.add("a", "x").catch(() => undefined);
    void h.add("a", "y");
    await flush();
    h.fail("x", new Error("job broke"));
    await flush();
    expect(h.started).toEqual(["x", "y"]);
    expect(h.settled.get("x")).toEqual([{ kind: "rejected", error: new Error("job broke") }]);
    h.finish("y");
    await h.drain();
    expect(h.settled.get("y")).toEqual([{ kind: "resolved" }]);
  });
});

describe("AgentQueues positions", () => {
  it("numbers waiting jobs FIFO (1 = next) and moves them up as jobs start", async () => {
    const h = new Harness({ default: 1, agents: {} });
    for (const id of ["r", "w1", "w2", "w3"]) void h.add("plan", id);
    await flush();
    expect(h.positions("plan", ["r", "w1", "w2", "w3"])).toEqual([null, 1, 2, 3]);

    h.finish("r");
    await flush();
    expect(h.started).toEqual(["r", "w1"]);
    expect(h.positions("plan", ["r", "w1", "w2", "w3"])).toEqual([null, null, 1, 2]);

    h.finish("w1");
    await flush();
    expect(h.positions("plan", ["w2", "w3"])).toEqual([null, 1]);

    h.finish("w2");
    await flush();
    expect(h.positions("plan", ["w3"])).toEqual([null]);
    h.finish("w3");
    await h.drain();
    expect(h.started).toEqual(["r", "w1", "w2", "w3"]);
  });

  it("is null for unknown tasks and unknown agents", async () => {
    const h = new Harness({ default: 1, agents: {} });
    void h.add("plan", "r");
    void h.add("plan", "w");
    await flush();
    expect(h.queues.position("plan", "nope")).toBeNull();
    expect(h.queues.position("other", "w")).toBeNull();
    expect(h.queues.running("other")).toBe(0);
    expect(h.queues.waiting("other")).toBe(0);
    h.finish("r");
    await flush();
    h.finish("w");
    await h.drain();
  });
});

describe("AgentQueues dequeue", () => {
  it("removes a waiting job: it never runs, add() rejects with the reason, the others move up", async () => {
    const h = new Harness({ default: 1, agents: {} });
    void h.add("explore", "run");
    const dropped = h.add("explore", "w1");
    void h.add("explore", "w2");
    void h.add("explore", "w3");
    await flush();
    expect(h.positions("explore", ["w1", "w2", "w3"])).toEqual([1, 2, 3]);

    const reason = new Error("cancelled by the user");
    h.dequeue("w1", reason);
    // Positions update at once, not only after the rejection has propagated.
    expect(h.positions("explore", ["w1", "w2", "w3"])).toEqual([null, 1, 2]);
    await expect(dropped).rejects.toBe(reason);
    expect(h.positions("explore", ["w1", "w2", "w3"])).toEqual([null, 1, 2]);
    expect(h.queues.waiting("explore")).toBe(2);
    // The running job keeps its slot, and no waiting job jumps in.
    expect(h.queues.running("explore")).toBe(1);
    expect(h.started).toEqual(["run"]);

    h.finish("run");
    await flush();
    expect(h.started).toEqual(["run", "w2"]);
    h.finish("w2");
    await flush();
    h.finish("w3");
    await h.drain();

    expect(h.started).toEqual(["run", "w2", "w3"]);
    expect(h.maxActive("explore")).toBe(1);
    expect(h.settled.get("w1")).toEqual([{ kind: "rejected", error: reason }]);
    for (const id of ["run", "w2", "w3"]) expect(h.settled.get(id)).toEqual([{ kind: "resolved" }]);
  });

  it("dequeuing the last waiting job leaves the slot count unchanged", async () => {
    const h = new Harness({ default: 2, agents: {} });
    void h.add("a", "r1");
    void h.add("a", "r2");
    const waiting = h.add("a", "w");
    await flush();
    h.dequeue("w");
    await expect(waiting).rejects.toThrow("dequeued w");
    expect(h.queues.running("a")).toBe(2);
    expect(h.queues.waiting("a")).toBe(0);
    // Both slots still usable afterwards: two new jobs run once r1 and r2 are done.
    h.finish("r1");
    h.finish("r2");
    await flush();
    void h.add("a", "n1");
    void h.add("a", "n2");
    void h.add("a", "n3");
    await flush();
    expect(h.active("a")).toBe(2);
    expect(h.queues.position("a", "n3")).toBe(1);
    for (const id of ["n1", "n2", "n3"]) {
      h.finish(id);
      await flush();
    }
    await h.drain();
    expect(h.started).toEqual(["r1", "r2", "n1", "n2", "n3"]);
    expect(h.maxActive("a")).toBe(2);
  });

  it("a signal already aborted at add() means the job never runs", async () => {
    const h = new Harness({ default: 1, agents: {} });
    const controller = new AbortController();
    controller.abort(new Error("too late"));
    const added = h.add("a", "gone", controller);
    await expect(added).rejects.toThrow("too late");
    await flush();
    expect(h.started).toEqual([]);
    expect(h.queues.position("a", "gone")).toBeNull();
    expect(h.queues.waiting("a")).toBe(0);
    expect(h.queues.running("a")).toBe(0);
  });

  it("aborting dequeue after the job started does not free its slot before the job settles", async () => {
    const h = new Harness({ default: 1, agents: {} });
    const running = h.add("explore", "run");
    void h.add("explore", "next");
    await flush();
    expect(h.started).toEqual(["run"]);

    h.dequeue("run", new Error("cancelled while running"));
    await flush();
    // p-queue on its own would reject `run` now and start `next`; the slot must be held instead.
    expect(h.started).toEqual(["run"]);
    expect(h.queues.running("explore")).toBe(1);
    expect(h.queues.position("explore", "next")).toBe(1);
    expect(h.settled.get("run")).toEqual([]);

    h.finish("run");
    await running;
    await flush();
    expect(h.started).toEqual(["run", "next"]);
    expect(h.maxActive("explore")).toBe(1);
    // The running job's add() resolves with the job's own outcome, not the abort reason.
    expect(h.settled.get("run")).toEqual([{ kind: "resolved" }]);

    h.dequeue("next");
    await flush();
    expect(h.settled.get("next")).toEqual([]);
    h.finish("next");
    await h.drain();
    expect(h.settled.get("next")).toEqual([{ kind: "resolved" }]);
  });

  it("settles each add() exactly once across a mix of finishes, failures and dequeues", async () => {
    const h = new Harness({ default: 2, agents: {} });
    const ids = ["a", "b", "c", "d", "e", "f"];
    for (const id of ids) void h.add("g", id).catch(() => undefined);
    await flush();
    h.dequeue("a"); // running: ignored until it settles
    h.dequeue("d"); // waiting: removed
    h.finish("b");
    await flush();
    h.fail("a", new Error("a failed"));
    await flush();
    h.dequeue("d"); // a second abort call is harmless
    for (const id of ["c", "e", "f"]) {
      h.finish(id);
      await flush();
    }
    await h.drain();
    for (const id of ids) expect(h.settled.get(id), id).toHaveLength(1);
    expect(h.settled.get("a")![0]).toEqual({ kind: "rejected", error: new Error("a failed") });
    expect(h.settled.get("d")![0]).toEqual({ kind: "rejected", error: new Error("dequeued d") });
    for (const id of ["b", "c", "e", "f"]) expect(h.settled.get(id)![0]).toEqual({ kind: "resolved" });
    expect(h.started).toEqual(["a", "b", "c", "e", "f"]);
    expect(h.maxActive("g")).toBe(2);
    expect(h.queues.running("g")).toBe(0);
    expect(h.queues.waiting("g")).toBe(0);
  });
});
