// 1. Completion push latency: from the model's last streamed chunk of a task's answer to (a) the terminal
// logging notification arriving at the MCP client and (b) the parent session's prompt being stored in
// opencode. Both ends are timestamped in this process on one clock (nowMs).
import type { Backend } from "../backend.js";
import { sampleTag } from "../backend.js";
import type { Profile } from "../profile.js";
import { budget, type ScenarioResult } from "../report.js";
import { between, seededRandom } from "../rng.js";
import { spawnSide, type Side } from "../sides.js";
import { distribution } from "../stats.js";

interface Sample {
  notifyMs: number;
  parentMs: number;
}

interface SideSamples {
  sequential: Sample[];
  concurrent: Sample[];
}

// The seed finds a task done only when a poll sees its session absent after an earlier poll saw it busy,
// so a run shorter than its 2 s poll period is never found (the seed's "fast tasks hang" bug). Tasks the
// seed runs therefore last 2.1-4.1 s, which also spreads them evenly over its poll phase.
const LONG = { min: 2_100, max: 4_100 };
// Our server does not care how long a task ran; its sequential samples use short runs to get many samples.
const SHORT = { min: 0, max: 100 };

export async function pushLatency(backend: Backend, profile: Profile): Promise<ScenarioResult> {
  const ours = await measure(backend, profile, "ours");
  const seed = await measure(backend, profile, "seed");
  const all = (s: SideSamples, pick: (x: Sample) => number) => [...s.sequential, ...s.concurrent].map(pick);
  const notify = distribution(all(ours, (s) => s.notifyMs), "ms");
  const parent = distribution(all(ours, (s) => s.parentMs), "ms");
  const fits = (p: number | null, limit: number): boolean => p !== null && p <= limit;
  const limitedBy =
    "notification path: opencode's idle event, one messages read to settle the result, the store write, then the MCP push; the parent prompt adds one messages read and prompt_async";
  return {
    name: "1. completion push latency (last model chunk ->)",
    rows: [
      { metric: "terminal notification at client", ours: notify, seed: distribution(all(seed, (s) => s.notifyMs), "ms") },
      { metric: "  one task at a time", ours: distribution(ours.sequential.map((s) => s.notifyMs), "ms"), seed: distribution(seed.sequential.map((s) => s.notifyMs), "ms") },
      { metric: "  batches launched together", ours: distribution(ours.concurrent.map((s) => s.notifyMs), "ms"), seed: distribution(seed.concurrent.map((s) => s.notifyMs), "ms") },
      { metric: "parent prompt stored in opencode", ours: parent, seed: distribution(all(seed, (s) => s.parentMs), "ms") },
      { metric: "  one task at a time", ours: distribution(ours.sequential.map((s) => s.parentMs), "ms"), seed: distribution(seed.sequential.map((s) => s.parentMs), "ms") },
      { metric: "  batches launched together", ours: distribution(ours.concurrent.map((s) => s.parentMs), "ms"), seed: distribution(seed.concurrent.map((s) => s.parentMs), "ms") },
    ],
    budgets: [
      budget("1a", "push notification p50", "<= 50 ms", { value: notify.p50, unit: "ms" }, fits(notify.p50, 50), limitedBy),
      budget("1b", "push notification p99", "<= 150 ms", { value: notify.p99, unit: "ms" }, fits(notify.p99, 150), limitedBy),
      budget("1c", "parent prompt stored p50", "<= 50 ms", { value: parent.p50, unit: "ms" }, fits(parent.p50, 50), limitedBy),
      budget("1d", "parent prompt stored p99", "<= 150 ms", { value: parent.p99, unit: "ms" }, fits(parent.p99, 150), limitedBy),
    ],
    details: {
      workload: {
        sequential_model_ms: { ours: { ...SHORT, unit: "ms" }, seed: { ...LONG, unit: "ms" } },
        batch_model_ms: { ...LONG, unit: "ms" },
        batches: { value: profile.push.batches, unit: "batches" },
        batch_size: { value: profile.push.batchSize, unit: "tasks" },
      },
    },
    notes: [
      "Clock: both ends are stamped in the bench process (ScriptedModel.onLastChunk and the MCP client's notification handler / the bench's own opencode event stream), so there is no cross-process clock skew.",
      "Parent prompt stored = first of opencode's message.updated / message.part.updated events for the parent's user message naming the task.",
      "Seed: its completion notification is sent the moment a poll finds the task done (generous: the seed itself pushed nothing over MCP); its parent prompt follows 200 ms later.",
      "Seed tasks must outlive one 2 s poll to be found at all, so its sequential samples run 2.1-4.1 s; ours run 0-100 ms. Batches use 2.1-4.1 s for both.",
    ],
  };
}

async function measure(backend: Backend, profile: Profile, side: Side): Promise<SideSamples> {
  const { sequential, seedSequential, batches, batchSize } = profile.push;
  const spawned = await spawnSide(side, backend, { concurrency: { push: batchSize * 2 } });
  // Separate streams, so that both servers get the same batch durations whatever their sequential count.
  const sequentialRandom = seededRandom(6);
  const batchRandom = seededRandom(7);
  let n = 0;
  const one = async (delayMs: number): Promise<Sample> => {
    const id = `push-${side}-${n++}`;
    const parent = await backend.createParent();
    const prompt = `[[group:push-${side}]][[delay:${delayMs}]][[reply:finished]] ${sampleTag(id)}`;
    const { taskId } = await spawned.driver.launch({ description: `push ${id}`, prompt, agent: "push", parent_session_id: parent });
    const [terminal, storedAt] = await Promise.all([spawned.driver.terminal(taskId, 60_000), backend.parents.stored(taskId, 60_000)]);
    const last = backend.lastChunk(id);
    if (terminal.event !== "task.completed" || last === undefined) {
      throw new Error(`push sample ${id} (${taskId}) ended ${terminal.event}; last chunk ${last === undefined ? "never seen" : "seen"}`);
    }
    return { notifyMs: terminal.at - last, parentMs: storedAt - last };
  };
  try {
    const range = side === "ours" ? SHORT : LONG;
    const sequentialDelay = (): number => between(sequentialRandom, range.min, range.max);
    await one(sequentialDelay()); // warm-up (JIT, first session of the agent): not recorded
    const result: SideSamples = { sequential: [], concurrent: [] };
    for (let i = 0; i < (side === "ours" ? sequential : seedSequential); i++) result.sequential.push(await one(sequentialDelay()));
    for (let b = 0; b < batches; b++) {
      const delays = Array.from({ length: batchSize }, () => between(batchRandom, LONG.min, LONG.max));
      result.concurrent.push(...(await Promise.all(delays.map(one))));
    }
    return result;
  } finally {
    await spawned.close();
  }
}
