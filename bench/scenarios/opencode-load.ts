// 4. Load on opencode: the HTTP requests a server sends to opencode while its tasks just wait on the model,
// counted by a proxy between the server and opencode. Both servers run at once, each behind its own proxy,
// on their own held tasks; only the counting window matters, so they do not disturb each other's figures.
import { nowMs } from "../../dev/model-server.js";
import type { Backend } from "../backend.js";
import { sampleTag } from "../backend.js";
import { sleep, waitUntil } from "../async-utils.js";
import { CountingProxy } from "../counting-proxy.js";
import type { Profile } from "../profile.js";
import type { ScenarioResult } from "../report.js";
import { spawnSide, type Side } from "../sides.js";
import { figure, type Figure } from "../stats.js";

/** Requests one server makes for all its tasks together, not per task. */
const SHARED_ROUTES = new Set(["GET /session/status", "GET /event"]);

interface Load {
  perTaskPerMinute: Figure;
  statusRequests: Figure;
  allPerMinute: Figure;
  cpuPerMinute: Figure;
  byRoute: Record<string, number | string>;
}

export async function opencodeLoad(backend: Backend, profile: Profile): Promise<ScenarioResult> {
  const [ours, seed] = await Promise.all([measure(backend, profile, "ours"), measure(backend, profile, "seed")]);
  const { tasks, windowMs } = profile.load;
  return {
    name: `4. load on opencode (${tasks} tasks held at the model, ${windowMs / 1000} s window)`,
    rows: [
      { metric: "per-task requests per task per minute", ours: ours.perTaskPerMinute, seed: seed.perTaskPerMinute },
      { metric: "shared GET /session/status in window", ours: ours.statusRequests, seed: seed.statusRequests },
      { metric: "all requests per minute", ours: ours.allPerMinute, seed: seed.allPerMinute },
      { metric: "server CPU time per minute", ours: ours.cpuPerMinute, seed: seed.cpuPerMinute },
    ],
    budgets: [],
    details: { ours_by_route: ours.byRoute, seed_by_route: seed.byRoute, tasks: figure(tasks, "tasks"), window: figure(windowMs, "ms") },
    notes: [
      "Counted by a reverse proxy (node:http) between each server and opencode, by method and route; the event stream (GET /event) is one long-lived request opened before the window.",
      "Per-task = every request except the shared GET /session/status and GET /event, divided by tasks and minutes.",
    ],
  };
}

async function measure(backend: Backend, profile: Profile, side: Side): Promise<Load> {
  const { tasks, windowMs } = profile.load;
  const proxy = await CountingProxy.start(backend.opencode.url);
  const spawned = await spawnSide(side, backend, { concurrency: { load: tasks }, opencodeUrl: proxy.url, seedPollMs: profile.seedPollMs });
  const group = `load-${side}`;
  try {
    const launched = await Promise.all(
      Array.from({ length: tasks }, (_, i) =>
        spawned.driver.launch({ description: `load ${i}`, prompt: `[[group:${group}]][[hold:${group}]] ${sampleTag(`${group}-${i}`)}`, agent: "load" }),
      ),
    );
    await waitUntil(`${tasks} ${side} tasks at the model`, () => backend.model.inFlight(group) === tasks, 60_000);
    await sleep(1_000); // let the launch requests (create, prompt) finish before the window opens
    const cpuBefore = spawned.driver.cpuMs();
    const from = nowMs();
    await sleep(windowMs);
    const to = nowMs();
    const cpuMs = spawned.driver.cpuMs() - cpuBefore;
    const counts = proxy.countBetween(from, to);
    backend.model.release(group);
    await Promise.all(launched.map((l) => spawned.driver.terminal(l.taskId, 120_000)));
    const minutes = (to - from) / 60_000;
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    const perTask = Object.entries(counts)
      .filter(([route]) => !SHARED_ROUTES.has(route))
      .reduce((a, [, n]) => a + n, 0);
    return {
      perTaskPerMinute: figure(perTask / tasks / minutes, "requests/task/min"),
      statusRequests: figure(counts["GET /session/status"] ?? 0, "requests"),
      allPerMinute: figure(total / minutes, "requests/min"),
      cpuPerMinute: figure(cpuMs / minutes, "ms/min"),
      byRoute: { unit: "requests", ...counts },
    };
  } finally {
    await spawned.close();
    await proxy.close();
  }
}
