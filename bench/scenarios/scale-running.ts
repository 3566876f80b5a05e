// 5a. Scale, running: R tasks running at once (the scripted model holds every one), the server's resident
// memory then, what it asks of opencode meanwhile, and how fast it takes in R completions at once.
import { nowMs } from "../../dev/model-server.js";
import type { Backend } from "../backend.js";
import { sampleTag } from "../backend.js";
import { pool, sleep, waitUntil } from "../async-utils.js";
import { CountingProxy } from "../counting-proxy.js";
import { directBurst } from "../opencode-direct.js";
import type { Profile } from "../profile.js";
import { budget, type ScenarioResult } from "../report.js";
import { spawnSide, SIDES, type Side } from "../sides.js";
import { distribution, figure, type Distribution, type Figure } from "../stats.js";

const RSS_BUDGET_MB = 120;
/** Budget e: first launch -> all at the model, at most this many times opencode driven directly. */
const ALL_RUNNING_VS_CALIBRATION = 1.2;
const DRAIN_RATE_BUDGET = 200;
/** Launch calls in flight at once: a client (or several) launching a large fan-out. */
const LAUNCH_WIDTH = 20;
/** How long to wait for the completions after releasing every task: the seed needs minutes for 1,000. */
const DRAIN_CAP_MS = 45_000;

interface Running {
  idleRss: Figure;
  launch: Distribution;
  allRunning: Figure;
  rss: Figure;
  peakRss: Figure;
  requestsPerSecond: Figure;
  cpuPerSecond: Figure;
  /** Terminal notifications per second after releasing all (over the full drain, or the first DRAIN_CAP_MS). */
  drainRate: Figure;
  drained: Figure;
}

export async function scaleRunning(backend: Backend, profile: Profile): Promise<ScenarioResult> {
  // opencode alone first, on a calm opencode: the fastest these starts can be had here.
  const calibration = await calibrate(backend, profile);
  const results = {} as Record<Side, Running>;
  for (const side of SIDES) results[side] = await measure(backend, profile, side);
  const { ours, seed } = results;
  const n = profile.scale.running;
  const allRunningLimit = calibration.allRunning.value === null ? null : Math.round(calibration.allRunning.value * ALL_RUNNING_VS_CALIBRATION);
  const below = (a: Figure, b: Figure): boolean => a.value !== null && b.value !== null && a.value < b.value;
  return {
    name: `5a. scale: ${n} tasks running at once`,
    rows: [
      { metric: "server RSS at start (no tasks)", ours: ours.idleRss, seed: seed.idleRss },
      { metric: "server RSS with all running", ours: ours.rss, seed: seed.rss },
      { metric: "server peak RSS (VmHWM)", ours: ours.peakRss, seed: seed.peakRss },
      { metric: `launch round trip (${LAUNCH_WIDTH} calls in flight)`, ours: ours.launch, seed: seed.launch, calibration: calibration.start },
      { metric: "first launch -> all at the model", ours: ours.allRunning, seed: seed.allRunning, calibration: calibration.allRunning },
      { metric: "requests to opencode while all wait", ours: ours.requestsPerSecond, seed: seed.requestsPerSecond },
      { metric: "server CPU while all wait", ours: ours.cpuPerSecond, seed: seed.cpuPerSecond },
      { metric: "completions notified after release, per second", ours: ours.drainRate, seed: seed.drainRate, calibration: calibration.idleRate },
      { metric: `completions notified within ${DRAIN_CAP_MS / 1000} s of release`, ours: ours.drained, seed: seed.drained, calibration: calibration.idled },
    ],
    budgets: [
      budget(
        "e.start",
        `first launch -> all ${n} at the model vs opencode driven directly (${calibration.allRunning.value} ms)`,
        `<= ${ALL_RUNNING_VS_CALIBRATION} x = ${allRunningLimit} ms`,
        ours.allRunning,
        ours.allRunning.value !== null && allRunningLimit !== null && ours.allRunning.value <= allRunningLimit,
        "a start is a session create and a prompt_async, as when opencode is driven directly (the calibration column); opencode takes them one after another",
      ),
      budget(
        "e.drain",
        "completions notified after release",
        `>= ${DRAIN_RATE_BUDGET} tasks/s`,
        ours.drainRate,
        ours.drainRate.value !== null && ours.drainRate.value >= DRAIN_RATE_BUDGET,
        `opencode itself announces the ${n} sessions idle at the rate in the 'opencode direct' column (driven directly, no server of ours in between); we settle each from its events, without a read`,
      ),
      budget(
        "f.rss",
        `server RSS at ${n} running tasks`,
        `<= ${RSS_BUDGET_MB} MB`,
        ours.rss,
        ours.rss.value !== null && ours.rss.value <= RSS_BUDGET_MB,
        "'server RSS at start' is the process at rest (Node, MCP SDK, zod, opencode SDK, SQLite); the rest grew during the burst of launches (per-task state, the p-queue jobs and their follower state, plus garbage the GC has not returned: the peak (VmHWM) is barely above it)",
      ),
      budget("f.seed", `server RSS at ${n} running tasks below the seed's (${seed.rss.value} MB)`, "< seed", ours.rss, below(ours.rss, seed.rss)),
    ],
    details: { tasks: figure(n, "tasks"), ours, seed, calibration },
    notes: [
      `RSS: VmRSS of the server process from /proc, read ${profile.scale.settleMs} ms after every task's request had reached the model; the seed baseline is the same Node + MCP SDK + opencode SDK stack, so the figures compare like with like.`,
      `Calibration (opencode direct): the bench itself creates ${n} sessions and prompts each (prompt_async, same agent, tools {task:false}, same held model), ${LAUNCH_WIDTH} starts in flight at once like the ${LAUNCH_WIDTH} launch calls; measured from the first create to all ${n} at the model. It runs first, on a calm opencode. Its release rate is opencode's session.idle events per second at the bench's event stream.`,
      "The seed's poll reads every running task's messages one after another; with this many tasks one poll outlasts its 2 s interval and polls overlap.",
      "The bench's opencode runs with BUN_CONFIG_MAX_HTTP_REQUESTS=4096: a stock opencode (Bun fetch) has at most 256 requests out at once, so at most 256 tasks can be at the model together whatever the concurrency limits.",
    ],
  };
}

interface Calibration {
  /** One start (create + prompt_async) with the others in flight. */
  start: Distribution;
  allRunning: Figure;
  idleRate: Figure;
  idled: Figure;
}

/** Budget e's yardstick: the same starts with no MCP server in between. */
async function calibrate(backend: Backend, profile: Profile): Promise<Calibration> {
  const n = profile.scale.running;
  const group = "scale-direct";
  const started = nowMs();
  const starts = await directBurst(backend.sdk, n, LAUNCH_WIDTH, group, { agent: "scale", tools: { task: false } });
  await waitUntil(`${n} direct starts at the model`, () => backend.model.inFlight(group) === n, 600_000, () => `${backend.model.inFlight(group)} are`);
  const allRunning = nowMs() - started;
  const released = nowMs();
  backend.model.release(group);
  const idle = (): number[] => starts.flatMap((s) => backend.tap.idleAt(s.sessionID) ?? []);
  await waitUntil(`${n} direct sessions idle`, () => idle().length === n, DRAIN_CAP_MS).catch(() => undefined);
  const idleAt = idle();
  const seconds = idleAt.length === n ? (Math.max(...idleAt) - released) / 1000 : DRAIN_CAP_MS / 1000;
  return {
    start: distribution(starts.map((s) => s.promptedAt - s.createAt), "ms"),
    allRunning: figure(allRunning, "ms"),
    idleRate: figure(idleAt.length / seconds, "tasks/s"),
    idled: figure(idleAt.length, "tasks"),
  };
}

async function measure(backend: Backend, profile: Profile, side: Side): Promise<Running> {
  const { running: n, rateWindowMs, settleMs } = profile.scale;
  const proxy = await CountingProxy.start(backend.opencode.url);
  const spawned = await spawnSide(side, backend, { concurrency: { scale: n }, opencodeUrl: proxy.url, seedPollMs: profile.seedPollMs });
  const group = `scale-${side}`;
  try {
    const idle = spawned.driver.memory();
    const started = nowMs();
    const launched = await pool(
      Array.from({ length: n }, (_, i) => i),
      LAUNCH_WIDTH,
      (i) => spawned.driver.launch({ description: `scale ${i}`, prompt: `[[group:${group}]][[hold:${group}]] ${sampleTag(`${group}-${i}`)}`, agent: "scale" }),
    );
    await waitUntil(`${n} ${side} tasks at the model`, () => backend.model.inFlight(group) === n, 600_000, () => `${backend.model.inFlight(group)} are`);
    const allRunning = nowMs() - started;
    await sleep(settleMs); // let the last launches' requests settle
    const rss = spawned.driver.memory();
    const cpuBefore = spawned.driver.cpuMs();
    const from = nowMs();
    await sleep(rateWindowMs);
    const to = nowMs();
    const cpuMs = spawned.driver.cpuMs() - cpuBefore;
    const requests = Object.values(proxy.countBetween(from, to)).reduce((a, b) => a + b, 0);
    const peak = spawned.driver.memory();
    const released = nowMs();
    backend.model.release(group);
    const terminals = await Promise.all(
      launched.map((l) => spawned.driver.terminal(l.taskId, DRAIN_CAP_MS).catch(() => undefined)),
    );
    const arrivals = terminals.flatMap((t) => (t ? [t.at] : []));
    const drainSeconds = arrivals.length === n ? (Math.max(...arrivals) - released) / 1000 : DRAIN_CAP_MS / 1000;
    const seconds = (to - from) / 1000;
    return {
      idleRss: figure(idle.rssMb, "MB"),
      launch: distribution(launched.map((l) => l.rttMs), "ms"),
      allRunning: figure(allRunning, "ms"),
      rss: figure(rss.rssMb, "MB"),
      peakRss: figure(Math.max(rss.peakRssMb, peak.peakRssMb), "MB"),
      requestsPerSecond: figure(requests / seconds, "requests/s"),
      cpuPerSecond: figure(cpuMs / seconds, "ms/s"),
      drainRate: figure(arrivals.length / drainSeconds, "tasks/s"),
      drained: figure(arrivals.length, "tasks"),
    };
  } finally {
    await spawned.close();
    await proxy.close();
  }
}
