// 1. Completion push latency: from the model's last streamed chunk of a task's answer to (a) the terminal
// logging notification arriving at the MCP client and (b) the parent session's prompt being stored in
// opencode. All timestamps are taken in this process on one clock (nowMs). The bench's own opencode
// event stream also splits (a) into opencode's share (last chunk -> opencode announces the session idle)
// and the server's share (idle -> notification at the client).
import type { Backend } from "../backend.js";
import { sampleTag } from "../backend.js";
import type { Profile } from "../profile.js";
import { budget, type Row, type ScenarioResult } from "../report.js";
import { between, seededRandom } from "../rng.js";
import { spawnSide, SIDES, type Side } from "../sides.js";
import { distribution, figure } from "../stats.js";

interface Sample {
  batch: boolean;
  notifyMs: number;
  parentMs: number;
  /** Last chunk -> opencode's session.idle at the bench's event stream. */
  opencodeMs: number;
  /** opencode's session.idle -> the notification at the client. */
  serverMs: number;
}

const PARENT_PATH =
  "after the notification the outbox delivers one row at a time, each a messages read of the parent then prompt_async, so when tasks end together the last parent waits for the others";

// Our server does not care how long a task ran; its one-at-a-time samples use short runs to get many.
const SHORT = { min: 0, max: 100 };

/**
 * The seed finds a task done only when a poll sees its session absent after an earlier poll saw it busy,
 * so a run shorter than its poll period is never found (the seed's "fast tasks hang" bug). Runs the seed
 * does therefore last between one and two poll periods (plus margin), spreading them over its poll phase.
 */
const long = (profile: Profile) => ({ min: profile.seedPollMs + 100, max: 2 * profile.seedPollMs + 100 });

export async function pushLatency(backend: Backend, profile: Profile): Promise<ScenarioResult> {
  const samples = {} as Record<Side, Sample[]>;
  for (const side of SIDES) samples[side] = await measure(backend, profile, side);
  const pick = (side: Side, field: keyof Omit<Sample, "batch">, only?: "sequential" | "batch") =>
    distribution(
      samples[side].filter((s) => only === undefined || s.batch === (only === "batch")).map((s) => s[field]),
      "ms",
    );
  const row = (metric: string, field: keyof Omit<Sample, "batch">, only?: "sequential" | "batch"): Row => ({
    metric,
    ours: pick("ours", field, only),
    seed: pick("seed", field, only),
  });
  const notify = pick("ours", "notifyMs");
  const parent = pick("ours", "parentMs");
  const fits = (p: number | null, limit: number): boolean => p !== null && p <= limit;
  const opencodeShare = pick("ours", "opencodeMs").p50;
  const limitedBy = (what: string): string =>
    `${what}; opencode alone takes p50 ${opencodeShare} ms from the last chunk to announcing the session idle on this machine (see the breakdown rows)`;
  const { min, max } = long(profile);
  return {
    name: "1. completion push latency (from the model's last chunk)",
    rows: [
      row("terminal notification at client", "notifyMs"),
      row("  one task at a time", "notifyMs", "sequential"),
      row("  batches launched together", "notifyMs", "batch"),
      row("  of which opencode: last chunk -> session idle", "opencodeMs"),
      row("  of which server: session idle -> notification", "serverMs"),
      row("parent prompt stored in opencode", "parentMs"),
      row("  one task at a time", "parentMs", "sequential"),
      row("  batches launched together", "parentMs", "batch"),
    ],
    budgets: [
      budget("1a", "push notification p50", "<= 50 ms", { value: notify.p50, unit: "ms" }, fits(notify.p50, 50), limitedBy("idle event, one messages read to settle the result, store write, MCP push")),
      budget("1b", "push notification p99", "<= 150 ms", { value: notify.p99, unit: "ms" }, fits(notify.p99, 150), limitedBy("idle event, one messages read to settle the result, store write, MCP push")),
      budget("1c", "parent prompt stored p50", "<= 50 ms", { value: parent.p50, unit: "ms" }, fits(parent.p50, 50), limitedBy(PARENT_PATH)),
      budget("1d", "parent prompt stored p99", "<= 150 ms", { value: parent.p99, unit: "ms" }, fits(parent.p99, 150), limitedBy(PARENT_PATH)),
    ],
    details: {
      workload: {
        ours_one_at_a_time_model_ms: { ...SHORT, unit: "ms" },
        seed_one_at_a_time_model_ms: { min, max, unit: "ms" },
        batch_model_ms: { min, max, unit: "ms" },
        batches: figure(profile.push.batches, "batches"),
        batch_size: figure(profile.push.batchSize, "tasks"),
        seed_poll: figure(profile.seedPollMs, "ms"),
      },
    },
    notes: [
      "Both ends of every figure are stamped in the bench process (ScriptedModel.onLastChunk; the MCP client's notification handler; the bench's own opencode event stream), so there is no cross-process clock skew.",
      "Parent prompt stored = the first of opencode's message.updated / message.part.updated events for the parent's user message naming the task.",
      "The seed's notification is sent the moment a poll finds the task done (generous: the seed pushed nothing over MCP); its parent prompt follows 200 ms later.",
      `Seed runs must outlive one poll to be found at all, so its one-at-a-time samples run ${min}-${max} ms; ours run ${SHORT.min}-${SHORT.max} ms. Batches run ${min}-${max} ms for both.`,
    ],
  };
}

async function measure(backend: Backend, profile: Profile, side: Side): Promise<Sample[]> {
  const { sequential, seedSequential, batches, batchSize } = profile.push;
  const spawned = await spawnSide(side, backend, { concurrency: { push: batchSize * 2 }, seedPollMs: profile.seedPollMs });
  // Separate streams, so that both servers get the same batch durations whatever their sequential count.
  const sequentialRandom = seededRandom(6);
  const batchRandom = seededRandom(7);
  let n = 0;
  const one = async (delayMs: number, batch: boolean): Promise<Sample> => {
    const id = `push-${side}-${n++}`;
    const parent = await backend.createParent();
    const prompt = `[[group:push-${side}]][[delay:${delayMs}]][[reply:finished]] ${sampleTag(id)}`;
    const { taskId } = await spawned.driver.launch({ description: `push ${id}`, prompt, agent: "push", parent_session_id: parent });
    const [terminal, storedAt] = await Promise.all([spawned.driver.terminal(taskId, 60_000), backend.tap.stored(taskId, 60_000)]);
    const last = backend.lastChunk(id);
    const idle = terminal.sessionId === null ? undefined : backend.tap.idleAt(terminal.sessionId);
    if (terminal.event !== "task.completed" || last === undefined || idle === undefined) {
      throw new Error(`push sample ${id} (${taskId}) ended ${terminal.event}; last chunk seen: ${last !== undefined}; idle seen: ${idle !== undefined}`);
    }
    return { batch, notifyMs: terminal.at - last, parentMs: storedAt - last, opencodeMs: idle - last, serverMs: terminal.at - idle };
  };
  try {
    const range = side === "ours" ? SHORT : long(profile);
    const sequentialDelay = (): number => between(sequentialRandom, range.min, range.max);
    await one(sequentialDelay(), false); // warm-up (JIT, the agent's first session): not recorded
    const samples: Sample[] = [];
    for (let i = 0; i < (side === "ours" ? sequential : seedSequential); i++) samples.push(await one(sequentialDelay(), false));
    for (let b = 0; b < batches; b++) {
      const { min, max } = long(profile);
      const delays = Array.from({ length: batchSize }, () => between(batchRandom, min, max));
      samples.push(...(await Promise.all(delays.map((d) => one(d, true)))));
    }
    return samples;
  } finally {
    await spawned.close();
  }
}
