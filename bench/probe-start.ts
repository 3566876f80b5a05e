// Where a background task's start time goes. Not part of `npm run bench`; run it after compiling bench/:
//   npx tsc -p bench/tsconfig.json && node out/bench/bench/probe-start.js
// PROBE_QUICK=1 takes a few samples only; PROBE_OUT=path writes the figures there (default: stdout only).
// Three probes, one opencode + scripted model (the bench's backend):
//   A. request shapes, opencode driven directly, one start at a time: session create, prompt_async's 204,
//      204 -> request at the model, for plain prompts and with each option our runner or the seed sends;
//   B. opencode under load: K creates, then K prompt_async, all in flight at once (K = 4, 16, 256);
//   C. our server and the seed model behind a timestamping proxy on a slot workload (limit 2), each task's
//      start cut into its steps, and each slot handoff from the request's end at the model to the next.
import { writeFileSync } from "node:fs";
import { nowMs } from "../dev/model-server.js";
import { sleep, waitUntil } from "./async-utils.js";
import { startBackend, type Backend } from "./backend.js";
import { CountingProxy } from "./counting-proxy.js";
import { ModelArrivals, startDirect, type StartShape } from "./opencode-direct.js";
import { spawnSide, SIDES, type Side } from "./sides.js";
import { distribution, type Distribution } from "./stats.js";

const QUICK = process.env.PROBE_QUICK === "1";
/** PROBE_PARTS=AC runs only those probes. */
const PARTS = process.env.PROBE_PARTS ?? "ABC";
const AGENT = "probe";
/** Part C's model time per task: longer than the seed's 2 s poll, or the seed never finds a task done. */
const HOLD_MS = 2_500;
const OURS_TOOLS = { task: false };
const MAX_DEPTH_TOOLS = { task: false, "*background_task": false, "*background_output": false, "*background_cancel": false };

type Steps = Record<string, Distribution>;
type Rows = Array<Record<string, number>>;

async function main(): Promise<void> {
  const backend = await startBackend();
  const arrivals = new ModelArrivals(backend.model);
  try {
    const shapes = PARTS.includes("A") ? await requestShapes(backend, arrivals, QUICK ? 2 : 15) : {};
    print("A. one start at a time, opencode driven directly (ms, p50 / p95)", shapes);
    const load: Record<string, Steps> = {};
    if (PARTS.includes("B")) for (const k of QUICK ? [4] : [4, 16, 256]) load[`${k} in flight`] = await inFlight(backend, arrivals, k);
    print("B. K starts in flight at once, opencode driven directly (ms, p50 / p95)", load);
    // Sides alternate over rounds, so that drift in the machine's load hits both alike.
    const rows: Record<string, Rows> = {};
    if (PARTS.includes("C")) {
      for (let round = 0; round < (QUICK ? 1 : 3); round++) {
        for (const side of SIDES) {
          for (const [name, more] of Object.entries(await throughServer(backend, arrivals, side, QUICK ? 4 : 8, round))) rows[name] = [...(rows[name] ?? []), ...more];
        }
      }
    }
    const servers = Object.fromEntries(Object.entries(rows).map(([name, r]) => [name, toSteps(r)]));
    print("C. through the MCP servers, limit 2, all launched at once (ms, p50 / p95)", servers);
    if (process.env.PROBE_OUT) writeFileSync(process.env.PROBE_OUT, `${JSON.stringify({ date: new Date().toISOString(), shapes, load, servers }, null, 2)}\n`);
  } finally {
    await backend.stop();
  }
}

function print(title: string, table: Record<string, Steps>): void {
  console.log(`\n${title}`);
  for (const [name, steps] of Object.entries(table)) {
    const cells = Object.entries(steps).map(([step, d]) => `${step} ${d.p50}/${d.p95}`);
    console.log(`  ${name.padEnd(34)} n=${Object.values(steps)[0]?.n ?? 0}  ${cells.join("  ")}`);
  }
}

/** A: each shape started `n` times, shapes interleaved so that drift in machine load hits all alike. */
async function requestShapes(backend: Backend, arrivals: ModelArrivals, n: number): Promise<Record<string, Steps>> {
  const { data: parent } = await backend.sdk.session.create({ title: "probe parent" }, { throwOnError: true });
  const shapes: Record<string, StartShape> = {
    "plain (title)": {},
    "no title": { title: null },
    "+ agent": { agent: AGENT },
    "+ tools {task:false}": { tools: OURS_TOOLS },
    "+ tools at max depth (wildcards)": { tools: MAX_DEPTH_TOOLS },
    "+ model": { model: { providerID: "mock", modelID: "mock-model" } },
    "+ parentID": { parentID: parent.id },
    "ours: parentID, agent, tools": { parentID: parent.id, agent: AGENT, tools: OURS_TOOLS },
    "seed: parentID, agent, tools": { parentID: parent.id, agent: AGENT, tools: { task: false, background_task: false } },
  };
  const samples = new Map<string, Rows>(Object.keys(shapes).map((k) => [k, []]));
  let seq = 0;
  for (let i = 0; i < n + 1; i++) {
    for (const [name, shape] of Object.entries(shapes)) {
      const id = `shape-${seq++}`;
      const start = await startDirect(backend.sdk, shape, `[[group:probe-shapes]][[reply:ok]] sample:${id}`);
      await waitUntil(`${id} at the model`, () => arrivals.at(id) !== undefined, 30_000);
      await waitUntil(`${id} idle`, () => backend.tap.idleAt(start.sessionID) !== undefined, 30_000);
      if (i === 0) continue; // the first round warms each shape up
      const model = arrivals.at(id)!;
      samples.get(name)!.push({
        create: start.createdAt - start.createAt,
        prompt_204: start.promptedAt - start.createdAt,
        "204_to_model": model - start.promptedAt,
        total: model - start.createAt,
      });
    }
  }
  return Object.fromEntries([...samples].map(([name, rows]) => [name, toSteps(rows)]));
}

/** B: k session creates at once, then k prompt_async at once (held at the model), then all released. */
async function inFlight(backend: Backend, arrivals: ModelArrivals, k: number): Promise<Steps> {
  const { sdk, model, tap } = backend;
  const group = `probe-k${k}`;
  const ids = Array.from({ length: k }, (_, i) => i);
  const creates = await Promise.all(
    ids.map(async () => {
      const at = nowMs();
      const { data } = await sdk.session.create({ title: "probe load" }, { throwOnError: true });
      return { sessionID: data.id, ms: nowMs() - at };
    }),
  );
  const burstAt = nowMs();
  const prompts = await Promise.all(
    creates.map(async ({ sessionID }, i) => {
      const at = nowMs();
      await sdk.session.promptAsync(
        { sessionID, agent: AGENT, tools: OURS_TOOLS, parts: [{ type: "text", text: `[[group:${group}]][[hold:${group}]] sample:${group}-${i}` }] },
        { throwOnError: true },
      );
      return nowMs() - at;
    }),
  );
  const promptsDone = nowMs();
  await waitUntil(`${k} at the model`, () => model.inFlight(group) === k, 300_000, () => `${model.inFlight(group)} are`);
  const toModel = ids.map((i) => arrivals.at(`${group}-${i}`)! - burstAt);
  model.release(group);
  await waitUntil(`${k} idle`, () => creates.every((c) => tap.idleAt(c.sessionID) !== undefined), 300_000);
  return {
    create: distribution(creates.map((c) => c.ms), "ms"),
    prompt_204: distribution(prompts, "ms"),
    "all_204s_after_first_sent": distribution([promptsDone - burstAt], "ms"),
    "first_prompt_sent_to_model": distribution(toModel, "ms"),
  };
}

/**
 * C: n tasks of one agent at limit 2, all launched at once, each held HOLD_MS at the model; the proxy between
 * the server and opencode stamps every request. First wave: launch call -> create -> prompt -> model.
 * Handoffs: a request's end at the model -> the next task's request there, cut at each opencode call.
 */
async function throughServer(backend: Backend, arrivals: ModelArrivals, side: Side, n: number, round: number): Promise<Record<string, Rows>> {
  const limit = 2;
  const proxy = await CountingProxy.start(backend.opencode.url);
  const spawned = await spawnSide(side, backend, { concurrency: { [AGENT]: limit }, opencodeUrl: proxy.url });
  const group = `probe-${side}-${round}`;
  const failed = (error: unknown): never => {
    const calls = proxy.requests.slice(-10).map((r) => `${r.route} ${r.endedAt ? `${Math.round(r.endedAt - r.at)} ms` : "unanswered"}`);
    throw new Error(`${side}: ${String(error)}\n--- last requests to opencode ---\n${calls.join("\n")}\n--- server stderr ---\n${spawned.driver.stderr.slice(-3_000)}`);
  };
  try {
    await sleep(500); // the event stream connects
    const launched = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        spawned.driver.launch(
          { description: `sample:${group}-${i}`, prompt: `[[group:${group}]][[delay:${HOLD_MS}]][[reply:ok]] sample:${group}-${i}`, agent: AGENT },
          120_000,
        ),
      ),
    ).catch(failed);
    await Promise.all(launched.map((l) => spawned.driver.terminal(l.taskId, 120_000))).catch(failed);
    const requests = proxy.requests;
    const model = backend.model.requests.filter((r) => r.group === group);
    const byTask = launched.map((l, i) => {
      const sample = `${group}-${i}`;
      const create = requests.find((r) => r.route === "POST /session" && r.sample === sample);
      const prompt = requests.find((r) => r.route === "POST /session/:id/prompt_async" && r.sample === sample);
      const request = model.find((r) => r.firstUserText.includes(`sample:${sample}`));
      if (!create?.endedAt || !prompt?.endedAt || !request?.endedAt) throw new Error(`${side}: incomplete trace for ${sample}`);
      return { launchAt: l.startedAt, launchRtt: l.rttMs, create, prompt, modelAt: arrivals.at(sample)!, modelEnd: request.endedAt, sessionID: prompt.sessionID! };
    });
    const byStart = [...byTask].sort((a, b) => a.modelAt - b.modelAt);
    const byEnd = [...byTask].sort((a, b) => a.modelEnd - b.modelEnd);
    const first = byStart.slice(0, limit);
    const startSteps = (t: (typeof byTask)[number]): Record<string, number> => ({
      create_sent_to_answered: t.create.endedAt! - t.create.at,
      created_to_prompt_sent: t.prompt.at - t.create.endedAt!,
      prompt_sent_to_204: t.prompt.endedAt! - t.prompt.at,
      "204_to_model": t.modelAt - t.prompt.endedAt!,
    });
    const launchRoutes = ["GET /agent", "GET /global/health", "GET /session/:id"];
    const launchCalls = requests.filter((r) => launchRoutes.includes(r.route) && r.endedAt !== undefined && r.at < byStart[0]!.modelAt);
    const handoffs = byStart.slice(limit).map((next, k) => {
      const prev = byEnd[k]!;
      const idle = backend.tap.idleAt(prev.sessionID) ?? NaN;
      // The server's last word with opencode about the finished session before the next create: our
      // settle (messages read), the seed's todo check after its status poll.
      const about = requests.filter((r) => r.sessionID === prev.sessionID && r.at < next.create.at && r.endedAt !== undefined && r.at >= prev.modelEnd);
      const settle = about.at(-1);
      return {
        end_to_idle_event: idle - prev.modelEnd,
        idle_to_settle_read_sent: settle ? settle.at - idle : NaN,
        settle_read: settle ? settle.endedAt! - settle.at : NaN,
        settled_to_next_create_sent: next.create.at - (settle?.endedAt ?? idle),
        ...startSteps(next),
        total_gap: next.modelAt - prev.modelEnd,
      };
    });
    const label = side === "ours" ? "ours" : "seed";
    return {
      [`${label}: first wave`]: first.map((t) => ({
        launch_rtt: t.launchRtt,
        launch_to_create_sent: t.create.at - t.launchAt,
        ...startSteps(t),
        total: t.modelAt - t.launchAt,
      })),
      [`${label}: launch-time calls (GET /agent, health, parent)`]: launchCalls.map((r) => ({ [r.route]: r.endedAt! - r.at })),
      [`${label}: slot handoffs`]: handoffs,
    };
  } finally {
    await spawned.close();
    await proxy.close();
  }
}

/** Rows of named step times -> one distribution per step (rows may name different steps). */
function toSteps(rows: Rows): Steps {
  const names = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return Object.fromEntries(names.map((name) => [name, distribution(rows.flatMap((r) => (Number.isFinite(r[name]) ? [r[name]!] : [])), "ms")]));
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error("probe failed:", error);
    process.exit(1);
  },
);
