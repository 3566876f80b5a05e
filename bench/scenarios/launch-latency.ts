// 2. Launch latency: the background_task round trip at the client while the agent's slots are all taken
// by tasks the scripted model holds, i.e. every measured launch has to queue.
import type { Backend } from "../backend.js";
import { sampleTag } from "../backend.js";
import { sleep, waitUntil } from "../async-utils.js";
import type { Profile } from "../profile.js";
import { budget, type ScenarioResult } from "../report.js";
import { spawnSide, type Side } from "../sides.js";
import { distribution } from "../stats.js";

const BUSY_BUDGET_MS = 10;

export async function launchLatency(backend: Backend, profile: Profile): Promise<ScenarioResult> {
  const ours = await measureOurs(backend, profile);
  const seed = await measureSeed(backend, profile);
  const busy = { ours: await measureBusy(backend, profile, "ours"), seed: await measureBusy(backend, profile, "seed") };
  const dist = distribution(ours.rtts, "ms");
  const busyOurs = distribution(busy.ours.probes, "ms");
  const { burst } = profile.launch;
  return {
    name: "2. launch latency",
    rows: [
      { metric: "background_task round trip, agent saturated", ours: dist, seed: distribution(seed, "ms") },
      { metric: `  while opencode starts a burst of ${burst} (one launch at a time)`, ours: busyOurs, seed: distribution(busy.seed.probes, "ms") },
      { metric: `  the burst's own ${burst} launches (all at once)`, ours: distribution(busy.ours.burst, "ms"), seed: distribution(busy.seed.burst, "ms") },
    ],
    budgets: [
      budget(
        "g",
        `launch round trip p99 while opencode is busy starting ${burst} tasks`,
        `<= ${BUSY_BUDGET_MS} ms`,
        { value: busyOurs.p99, unit: "ms" },
        busyOurs.p99 !== null && busyOurs.p99 <= BUSY_BUDGET_MS,
        "a launch makes no request to opencode (agents, reachability and parents are known locally); the tail is our own event loop, busy starting the burst's sessions (their events and store writes) when the launch arrives",
      ),
    ],
    details: {
      limit: { value: profile.launch.limit, unit: "slots" },
      ours_queued: { value: ours.queued, unit: "tasks" },
      seed_slot_frees_after: { value: profile.launch.holdMs, unit: "ms" },
      busy_burst: { value: burst, unit: "tasks" },
      busy_probe_launches_ours: { value: busy.ours.probes.length, unit: "launches" },
      busy_probe_launches_seed: { value: busy.seed.probes.length, unit: "launches" },
    },
    notes: [
      `Saturated: ours, ${profile.launch.samples} launches in a row onto an agent whose ${profile.launch.limit} slots are held; each returns queued.`,
      `Saturated: the seed's launch blocks until a slot frees. Each sample frees the oldest held slot ${profile.launch.holdMs} ms after the call starts, so its figure is that wait plus the seed's poll lag (<= ${profile.seedPollMs} ms), its 200 ms notification delay and the session create.`,
      `Busy opencode: ${burst} launches at once onto an agent with ${burst} free slots (their sessions are created and prompted, then held at the model); meanwhile launches onto another agent, one at a time, until all ${burst} are at the model. Those one-at-a-time round trips are the budget's figure. The seed's launch creates its session before it answers, so its figure is opencode's create time under that load.`,
    ],
  };
}

/** Item 8 of issue 10: launch is local. Launch round trips while opencode is busy starting `burst` sessions. */
async function measureBusy(backend: Backend, profile: Profile, side: Side): Promise<{ probes: number[]; burst: number[] }> {
  const { burst } = profile.launch;
  const group = `busy-${side}`;
  const spawned = await spawnSide(side, backend, { concurrency: { gate: burst, load: 1_000 }, seedPollMs: profile.seedPollMs });
  try {
    // One launch first: the server has its agent list and a warm connection, as it would in use.
    await spawned.driver.launch({ description: "first", prompt: `[[group:${group}-probe]][[hold:${group}-probe]] ${sampleTag(`${group}-first`)}`, agent: "load" });
    const burstCalls = Promise.all(
      Array.from({ length: burst }, (_, i) =>
        spawned.driver.launch({ description: `burst ${i}`, prompt: `[[group:${group}]][[hold:${group}]] ${sampleTag(`${group}-${i}`)}`, agent: "gate" }, 120_000),
      ),
    );
    let burstDone = false;
    void burstCalls.then(() => (burstDone = true), () => (burstDone = true));
    const probes: number[] = [];
    // Until every burst task is at the model (opencode is busy creating and prompting until then).
    for (let i = 0; (backend.model.inFlight(group) < burst || !burstDone) && i < 200; i++) {
      const launched = await spawned.driver.launch({ description: `probe ${i}`, prompt: `[[group:${group}-probe]][[hold:${group}-probe]] ${sampleTag(`${group}-p${i}`)}`, agent: "load" }, 60_000);
      probes.push(launched.rttMs);
    }
    const launched = await burstCalls;
    await waitUntil(`${burst} ${side} burst tasks at the model`, () => backend.model.inFlight(group) === burst, 120_000);
    return { probes, burst: launched.map((l) => l.rttMs) };
  } finally {
    backend.model.release(group);
    backend.model.release(`${group}-probe`);
    await spawned.close();
  }
}

async function measureOurs(backend: Backend, profile: Profile): Promise<{ rtts: number[]; queued: number }> {
  const { limit, samples } = profile.launch;
  const spawned = await spawnSide("ours", backend, { concurrency: { gate: limit } });
  const prompt = (id: string): string => `[[group:gate-ours]][[hold:gate-ours]] ${sampleTag(id)}`;
  try {
    for (let i = 0; i < limit; i++) await spawned.driver.launch({ description: "filler", prompt: prompt(`gate-ours-f${i}`), agent: "gate" });
    await waitUntil("the fillers at the model", () => backend.model.inFlight("gate-ours") === limit, 30_000);
    const rtts: number[] = [];
    let queued = 0;
    for (let i = 0; i < samples; i++) {
      const launched = await spawned.driver.launch({ description: `queued ${i}`, prompt: prompt(`gate-ours-${i}`), agent: "gate" });
      if (launched.status === "queued") queued++;
      rtts.push(launched.rttMs);
    }
    if (queued !== samples) throw new Error(`launch scenario: only ${queued} of ${samples} launches queued; the slots were not full`);
    return { rtts, queued };
  } finally {
    await spawned.driver.call("background_cancel", { all: true }).catch(() => undefined);
    backend.model.release("gate-ours");
    await spawned.close();
  }
}

async function measureSeed(backend: Backend, profile: Profile): Promise<number[]> {
  const { limit, seedSamples, holdMs } = profile.launch;
  const poll = profile.seedPollMs;
  const spawned = await spawnSide("seed", backend, { concurrency: { gate: limit }, seedPollMs: profile.seedPollMs });
  // One hold key per task, so that exactly one slot is freed at a time.
  const held: string[] = [];
  const launch = (key: string) =>
    spawned.driver.launch({ description: key, prompt: `[[group:gate-seed]][[hold:${key}]] ${sampleTag(key)}`, agent: "gate" }, 60_000);
  try {
    for (let i = 0; i < limit; i++) {
      await launch(`gate-seed-f${i}`);
      held.push(`gate-seed-f${i}`);
    }
    await waitUntil("the fillers at the model", () => backend.model.inFlight("gate-seed") === limit, 30_000);
    await sleep(poll + 500); // a poll must see them busy, or the seed never finds them done
    const rtts: number[] = [];
    for (let i = 0; i < seedSamples; i++) {
      const key = `gate-seed-${i}`;
      const pending = launch(key);
      await sleep(holdMs);
      backend.model.release(held.shift()!);
      rtts.push((await pending).rttMs);
      held.push(key);
      await waitUntil("the new task at the model", () => backend.model.inFlight("gate-seed") === limit, 30_000);
      if (i < seedSamples - 1) await sleep(poll + 100); // likewise: seen busy before a later sample releases it
    }
    return rtts;
  } finally {
    for (const key of held) backend.model.release(key);
    await spawned.close();
  }
}
