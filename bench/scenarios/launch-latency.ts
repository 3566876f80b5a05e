// 2. Launch latency: the background_task round trip at the client while the agent's slots are all taken
// by tasks the scripted model holds, i.e. every measured launch has to queue.
import type { Backend } from "../backend.js";
import { sampleTag } from "../backend.js";
import { sleep, waitUntil } from "../async-utils.js";
import type { Profile } from "../profile.js";
import { budget, type ScenarioResult } from "../report.js";
import { spawnSide } from "../sides.js";
import { distribution } from "../stats.js";

export async function launchLatency(backend: Backend, profile: Profile): Promise<ScenarioResult> {
  const ours = await measureOurs(backend, profile);
  const seed = await measureSeed(backend, profile);
  const dist = distribution(ours.rtts, "ms");
  return {
    name: "2. launch latency, agent saturated",
    rows: [{ metric: "background_task round trip", ours: dist, seed: distribution(seed, "ms") }],
    budgets: [
      budget(
        "2",
        "launch round trip p95 (queue full)",
        "<= 50 ms",
        { value: dist.p95, unit: "ms" },
        dist.p95 !== null && dist.p95 <= 50,
        "a launch validates the agent against opencode (GET /agent) and writes the task to SQLite before answering",
      ),
    ],
    details: {
      limit: { value: profile.launch.limit, unit: "slots" },
      ours_queued: { value: ours.queued, unit: "tasks" },
      seed_slot_frees_after: { value: profile.launch.holdMs, unit: "ms" },
    },
    notes: [
      `Ours: ${profile.launch.samples} launches in a row onto an agent whose ${profile.launch.limit} slots are held; each returns queued.`,
      `Seed: its launch blocks until a slot frees. Each sample frees the oldest held slot ${profile.launch.holdMs} ms after the call starts, so its figure is that wait plus the seed's poll lag (<= ${profile.seedPollMs} ms), its 200 ms notification delay and the session create.`,
    ],
  };
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
