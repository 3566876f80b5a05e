// 1. Completion push latency: from the model's last streamed chunk of a task's answer to (a) the terminal
// logging notification arriving at the MCP client and (b) the parent session's prompt being stored in
// opencode. All timestamps are taken in this process on one clock (nowMs). The bench's own opencode
// event stream also splits (a) into opencode's share (last chunk -> opencode announces the session idle)
// and the server's share (idle -> notification at the client).
import type { Backend } from "../backend.js";
import { sampleTag } from "../backend.js";
import type { Profile } from "../profile.js";
import { budget, type Budget, type Row, type ScenarioResult } from "../report.js";
import { between, seededRandom } from "../rng.js";
import { sleep, waitUntil } from "../async-utils.js";
import { spawnSide, SIDES, type Side } from "../sides.js";
import { distribution, figure } from "../stats.js";

/** One task at a time; batches launched together with random run times; tasks held, then released together. */
type Kind = "sequential" | "batch" | "together";

interface Sample {
  kind: Kind;
  notifyMs: number;
  parentMs: number;
  /** Last chunk -> opencode's session.idle at the bench's event stream. */
  opencodeMs: number;
  /** opencode's session.idle -> the notification at the client. */
  serverMs: number;
}
type Field = keyof Omit<Sample, "kind">;

/** Budget b's slack over the notification: the parent prompt is one more request to opencode. */
const PARENT_SLACK_MS = 15;
const PARENT_P99_MS = 100;

const PARENT_PATH =
  "after the notification, one prompt_async per parent (agent and model known from the event stream); opencode takes ~40-60 ms p50 to accept a prompt_async on its own (bench/README.md, where the start overhead goes), and it takes prompts one after another, so parents released together wait for each other inside opencode";
const SERVER_SHARE =
  "the result is settled from the streamed events in the idle's own turn (no read), then one SQLite write and the push; the tail is tasks ending in the same instant, settled and pushed one after another on one thread";

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
  const pick = (side: Side, field: Field, only?: Kind) =>
    distribution(
      samples[side].filter((s) => only === undefined || s.kind === only).map((s) => s[field]),
      "ms",
    );
  const row = (metric: string, field: Field, only?: Kind): Row => ({ metric, ours: pick("ours", field, only), seed: pick("seed", field, only) });
  const share = pick("ours", "serverMs");
  const opencodeShare = pick("ours", "opencodeMs").p50;
  const fits = (p: number | null, limit: number | null): boolean => p !== null && limit !== null && p <= limit;
  const { min, max } = long(profile);
  const { rounds, size } = profile.push.together;
  const parentBudgets = (id: string, label: string, only?: Kind): Budget[] => {
    const notify = pick("ours", "notifyMs", only);
    const parent = pick("ours", "parentMs", only);
    const p50Limit = notify.p50 === null ? null : Math.round((notify.p50 + PARENT_SLACK_MS) * 100) / 100;
    return [
      budget(`${id}.p50`, `parent prompt stored p50${label}`, `<= notification p50 + ${PARENT_SLACK_MS} ms = ${p50Limit} ms`, { value: parent.p50, unit: "ms" }, fits(parent.p50, p50Limit), PARENT_PATH),
      budget(`${id}.p99`, `parent prompt stored p99${label}`, `<= ${PARENT_P99_MS} ms`, { value: parent.p99, unit: "ms" }, fits(parent.p99, PARENT_P99_MS), PARENT_PATH),
    ];
  };
  return {
    name: "1. completion push latency (from the model's last chunk)",
    rows: [
      row("terminal notification at client", "notifyMs"),
      row("  one task at a time", "notifyMs", "sequential"),
      row("  batches launched together", "notifyMs", "batch"),
      row(`  ${size} parents, released together`, "notifyMs", "together"),
      row("  of which opencode: last chunk -> session idle", "opencodeMs"),
      row("  of which server: session idle -> notification", "serverMs"),
      row("    one task at a time", "serverMs", "sequential"),
      row("    batches launched together", "serverMs", "batch"),
      row(`    ${size} parents, released together`, "serverMs", "together"),
      row("parent prompt stored in opencode", "parentMs"),
      row("  one task at a time", "parentMs", "sequential"),
      row("  batches launched together", "parentMs", "batch"),
      row(`  ${size} parents, released together`, "parentMs", "together"),
    ],
    budgets: [
      budget("a.p50", "our share of the push (session idle -> notification) p50", "<= 3 ms", { value: share.p50, unit: "ms" }, fits(share.p50, 3), SERVER_SHARE),
      budget("a.p99", "our share of the push (session idle -> notification) p99", "<= 15 ms", { value: share.p99, unit: "ms" }, fits(share.p99, 15), SERVER_SHARE),
      ...parentBudgets("b", ""),
      ...parentBudgets("b.together", `, ${size} tasks of different parents released together`, "together"),
    ],
    details: {
      workload: {
        ours_one_at_a_time_model_ms: { ...SHORT, unit: "ms" },
        seed_one_at_a_time_model_ms: { min, max, unit: "ms" },
        batch_model_ms: { min, max, unit: "ms" },
        batches: figure(profile.push.batches, "batches"),
        batch_size: figure(profile.push.batchSize, "tasks"),
        released_together_rounds: figure(rounds, "rounds"),
        released_together_size: figure(size, "tasks"),
        seed_poll: figure(profile.seedPollMs, "ms"),
      },
      opencode_share_p50: figure(opencodeShare, "ms"),
    },
    notes: [
      "Both ends of every figure are stamped in the bench process (ScriptedModel.onLastChunk; the MCP client's notification handler; the bench's own opencode event stream), so there is no cross-process clock skew.",
      "Parent prompt stored = the first of opencode's message.updated / message.part.updated events for the parent's user message naming the task.",
      "Every task has its own parent session. Released together: the model holds all tasks of a round, then answers them all at once, so their parents are prompted at the same moment.",
      "The seed's notification is sent the moment a poll finds the task done (generous: the seed pushed nothing over MCP); its parent prompt follows 200 ms later.",
      `Seed runs must outlive one poll to be found at all, so its one-at-a-time samples run ${min}-${max} ms; ours run ${SHORT.min}-${SHORT.max} ms. Batches run ${min}-${max} ms for both.`,
    ],
  };
}

async function measure(backend: Backend, profile: Profile, side: Side): Promise<Sample[]> {
  const { sequential, seedSequential, batches, batchSize, together } = profile.push;
  const spawned = await spawnSide(side, backend, { concurrency: { push: Math.max(batchSize, together.size) * 2 }, seedPollMs: profile.seedPollMs });
  // Separate streams, so that both servers get the same batch durations whatever their sequential count.
  const sequentialRandom = seededRandom(6);
  const batchRandom = seededRandom(7);
  let n = 0;
  const launch = async (script: string) => {
    const id = `push-${side}-${n++}`;
    const parent = await backend.createParent();
    const prompt = `${script}[[reply:finished]] ${sampleTag(id)}`;
    const { taskId } = await spawned.driver.launch({ description: `push ${id}`, prompt, agent: "push", parent_session_id: parent });
    return { id, taskId };
  };
  const collect = async (kind: Kind, { id, taskId }: { id: string; taskId: string }): Promise<Sample> => {
    const [terminal, storedAt] = await Promise.all([spawned.driver.terminal(taskId, 60_000), backend.tap.stored(taskId, 60_000)]);
    const last = backend.lastChunk(id);
    const idle = terminal.sessionId === null ? undefined : backend.tap.idleAt(terminal.sessionId);
    if (terminal.event !== "task.completed" || last === undefined || idle === undefined) {
      throw new Error(`push sample ${id} (${taskId}) ended ${terminal.event}; last chunk seen: ${last !== undefined}; idle seen: ${idle !== undefined}`);
    }
    return { kind, notifyMs: terminal.at - last, parentMs: storedAt - last, opencodeMs: idle - last, serverMs: terminal.at - idle };
  };
  const one = async (delayMs: number, kind: Kind): Promise<Sample> => collect(kind, await launch(`[[group:push-${side}]][[delay:${delayMs}]]`));
  /** `size` tasks, each with its own parent, held at the model until all are there, then answered at once. */
  const releasedTogether = async (round: number): Promise<Sample[]> => {
    const key = `push-${side}-together-${round}`;
    const tasks = await Promise.all(Array.from({ length: together.size }, () => launch(`[[group:${key}]][[hold:${key}]]`)));
    await waitUntil(`${key} at the model`, () => backend.model.inFlight(key) === together.size, 60_000);
    // The seed finds a task done only after a poll has seen it busy.
    await sleep(side === "seed" ? profile.seedPollMs + 500 : 200);
    backend.model.release(key);
    return Promise.all(tasks.map((t) => collect("together", t)));
  };
  try {
    const range = side === "ours" ? SHORT : long(profile);
    const sequentialDelay = (): number => between(sequentialRandom, range.min, range.max);
    await one(sequentialDelay(), "sequential"); // warm-up (JIT, the agent's first session): not recorded
    const samples: Sample[] = [];
    for (let i = 0; i < (side === "ours" ? sequential : seedSequential); i++) samples.push(await one(sequentialDelay(), "sequential"));
    for (let b = 0; b < batches; b++) {
      const { min, max } = long(profile);
      const delays = Array.from({ length: batchSize }, () => between(batchRandom, min, max));
      samples.push(...(await Promise.all(delays.map((d) => one(d, "batch")))));
    }
    for (let r = 0; r < together.rounds; r++) samples.push(...(await releasedTogether(r)));
    return samples;
  } finally {
    await spawned.close();
  }
}
