/**
 * How much work each scenario does. The full profile is what `npm run bench` reports; BENCH_QUICK=1 runs
 * the same code on a handful of samples (the smoke test), which checks the plumbing, not the budgets.
 */
export interface Profile {
  quick: boolean;
  /**
   * The seed baseline's poll period: its real 2 s in the full profile. Quick mode shortens it (and every
   * wait that depends on it) so that the smoke test runs in seconds; its seed figures are then not the seed's.
   */
  seedPollMs: number;
  push: {
    /** Our server, one task at a time, near-instant model answers. */
    sequential: number;
    /** The seed, one task at a time (each must outlive a 2 s poll, see push-latency.ts). */
    seedSequential: number;
    /** Both servers: batches of tasks launched together. */
    batches: number;
    batchSize: number;
    /** Both servers: rounds of tasks (each of its own parent) held at the model, then released together. */
    together: { rounds: number; size: number };
  };
  launch: {
    samples: number;
    seedSamples: number;
    limit: number;
    holdMs: number;
    /** Launches at once that keep opencode busy while single launches are timed (budget g). */
    burst: number;
  };
  slots: { durationMs: number; agents: Array<{ agent: string; limit: number; tasks: number }> };
  load: { tasks: number; windowMs: number };
  scale: {
    running: number;
    /** After the last task reached the model, before memory is read: lets the launch traffic settle. */
    settleMs: number;
    rateWindowMs: number;
    stored: number;
    startSamples: number;
    /** Single-task reads, and first pages of 500. */
    readSamples: number;
  };
}

const FULL: Profile = {
  quick: false,
  seedPollMs: 2_000,
  push: { sequential: 50, seedSequential: 6, batches: 3, batchSize: 10, together: { rounds: 3, size: 10 } },
  launch: { samples: 100, seedSamples: 4, limit: 2, holdMs: 1_000, burst: 50 },
  slots: {
    durationMs: 3_000,
    agents: [
      { agent: "slot_a", limit: 2, tasks: 8 },
      { agent: "slot_b", limit: 4, tasks: 16 },
    ],
  },
  load: { tasks: 20, windowMs: 60_000 },
  scale: { running: 1_000, settleMs: 2_000, rateWindowMs: 10_000, stored: 100_000, startSamples: 3, readSamples: 200 },
};

const QUICK: Profile = {
  quick: true,
  seedPollMs: 250,
  push: { sequential: 2, seedSequential: 1, batches: 1, batchSize: 2, together: { rounds: 1, size: 2 } },
  launch: { samples: 3, seedSamples: 1, limit: 2, holdMs: 100, burst: 5 },
  slots: { durationMs: 500, agents: [{ agent: "slot_a", limit: 2, tasks: 4 }] },
  load: { tasks: 3, windowMs: 1_000 },
  scale: { running: 10, settleMs: 200, rateWindowMs: 500, stored: 500, startSamples: 1, readSamples: 10 },
};

export function profileFromEnv(env: NodeJS.ProcessEnv = process.env): Profile {
  return env.BENCH_QUICK === "1" || env.BENCH_QUICK === "true" ? QUICK : FULL;
}

/** Every agent the scenarios use; the sandbox's opencode.json declares them all. */
export const BENCH_AGENTS = ["push", "gate", "slot_a", "slot_b", "load", "scale", "probe"] as const;
