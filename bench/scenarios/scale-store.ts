// 5b. Scale, stored: S finished tasks in the data dir. Start-up (recovery) time, then background_output
// single-task reads and listing, as round trips at the MCP client.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Backend } from "../backend.js";
import type { McpDriver } from "../mcp-driver.js";
import { nowMs } from "../../src/dev/model-server.js";
import type { Profile } from "../profile.js";
import { budget, type ScenarioResult } from "../report.js";
import { seededRandom } from "../rng.js";
import { spawnSide } from "../sides.js";
import { writeFinishedTasks } from "../store-fixture.js";
import { distribution, figure, type Distribution, type Figure } from "../stats.js";

const READ_BUDGET_MS = 20;
/** The MCP SDK client's default limit on one message (StdioClientTransport maxBufferSize). */
const SDK_DEFAULT_MAX_MESSAGE = 10 * 1024 * 1024;
const PAGE = 50;

interface Startup {
  toToolsList: Distribution;
  managerStart: Distribution;
}

export async function scaleStore(backend: Backend, profile: Profile): Promise<ScenarioResult> {
  const { stored, startSamples } = profile.scale;
  const dir = mkdtempSync(join(tmpdir(), "bench-store-"));
  const emptyDir = mkdtempSync(join(tmpdir(), "bench-empty-"));
  try {
    const fixture = writeFinishedTasks(dir, stored);
    const empty = await startups(backend, emptyDir, undefined, startSamples);
    const full = await startups(backend, dir, fixture.configFile, startSamples);
    const reads = await readAndList(backend, profile, dir, fixture.configFile, fixture.ids);
    const listBudget = reads.paged ?? reads.list;
    const paginated = reads.paged !== null;
    return {
      name: `5b. scale: ${stored} finished tasks stored`,
      rows: [
        { metric: "start -> first tools/list, empty store", ours: empty.toToolsList, seed: null, note: "seed: no store" },
        { metric: `start -> first tools/list, ${stored} stored`, ours: full.toToolsList, seed: null },
        { metric: `task manager start (server log), ${stored} stored`, ours: full.managerStart, seed: null },
        { metric: "background_output single task", ours: reads.single, seed: null },
        { metric: "background_output list, everything", ours: reads.list, seed: null },
        ...(reads.paged ? [{ metric: `background_output list, page of ${PAGE}`, ours: reads.paged, seed: null }] : []),
        { metric: "list response size", ours: reads.listSize, seed: null },
        { metric: "server RSS after listing", ours: reads.rssAfterList, seed: null },
      ],
      budgets: [
        budget(
          "5b",
          "background_output single-task read p95",
          `<= ${READ_BUDGET_MS} ms`,
          { value: reads.single.p95, unit: "ms" },
          reads.single.p95 !== null && reads.single.p95 <= READ_BUDGET_MS,
        ),
        budget(
          "5c",
          `background_output list p95 (${paginated ? `page of ${PAGE}` : "no pagination: all tasks"})`,
          `<= ${READ_BUDGET_MS} ms`,
          { value: listBudget.p95, unit: "ms" },
          listBudget.p95 !== null && listBudget.p95 <= READ_BUDGET_MS,
          paginated
            ? "per-page cost"
            : `background_output has no limit/offset yet: every call builds, validates, serialises and sends all ${stored} tasks (${reads.listSize.value} MB; an MCP SDK client with its default 10 MB message limit cannot even receive it)`,
        ),
      ],
      details: {
        stored: figure(stored, "tasks"),
        fixture_write: figure(fixture.writeMs, "ms"),
        list_exceeds_sdk_default_message_limit: (reads.listSize.value ?? 0) * 1024 * 1024 > SDK_DEFAULT_MAX_MESSAGE,
        pagination_offered: paginated,
      },
      notes: [
        "Stored tasks are written with the server's own SqliteTaskStore, createTask and transition; a --config raises retention.maxTasks so that start-up pruning (default: keep 10,000) keeps them all.",
        "Start-up: spawn -> first successful tools/list at the client, and the server's own 'task manager started' ms (store open and migrate, recovery, retention prune).",
        "List round trips include the client's JSON parse and its validation of the result against the tool's outputSchema, as any SDK client does; this client raises maxBufferSize so the answer can arrive at all.",
      ],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(emptyDir, { recursive: true, force: true });
  }
}

async function startups(backend: Backend, dataDir: string, configFile: string | undefined, samples: number): Promise<Startup> {
  const toToolsList: number[] = [];
  const managerStart: number[] = [];
  for (let i = 0; i < samples; i++) {
    const spawned = await spawnSide("ours", backend, { concurrency: {}, dataDir, configFile });
    toToolsList.push(spawned.driver.readyMs);
    const ms = managerStartMs(spawned.driver.stderr);
    if (ms !== null) managerStart.push(ms);
    await spawned.close(); // waits for the process to exit, so the next start can take the data dir's lock
  }
  return { toToolsList: distribution(toToolsList, "ms"), managerStart: distribution(managerStart, "ms") };
}

/** The `ms` of the server's JSON log line "task manager started" (stderr, info level). */
function managerStartMs(stderr: string): number | null {
  for (const line of stderr.split("\n")) {
    if (!line.includes('"task manager started"')) continue;
    try {
      const ms = (JSON.parse(line) as { ms?: unknown }).ms;
      return typeof ms === "number" ? ms : null;
    } catch {
      return null;
    }
  }
  return null;
}

interface Reads {
  single: Distribution;
  list: Distribution;
  paged: Distribution | null;
  listSize: Figure;
  rssAfterList: Figure;
}

async function readAndList(backend: Backend, profile: Profile, dataDir: string, configFile: string, ids: string[]): Promise<Reads> {
  const { readSamples, listSamples } = profile.scale;
  const spawned = await spawnSide("ours", backend, { concurrency: {}, dataDir, configFile, maxBufferSize: 1024 * 1024 * 1024 });
  const { driver } = spawned;
  try {
    const random = seededRandom(5);
    const timed = async (args: Record<string, unknown>): Promise<{ ms: number; bytes: number }> => {
      const start = nowMs();
      const result = await driver.call("background_output", args, 600_000);
      const ms = nowMs() - start;
      return { ms, bytes: Buffer.byteLength(JSON.stringify(result)) };
    };
    const single: number[] = [];
    for (let i = 0; i < readSamples; i++) single.push((await timed({ task_id: ids[Math.floor(random() * ids.length)]! })).ms);
    const list: number[] = [];
    let bytes = 0;
    for (let i = 0; i < listSamples; i++) {
      const one = await timed({});
      list.push(one.ms);
      bytes = one.bytes;
    }
    const paged = (await offersPagination(driver)) ? await pages(timed, readSamples) : null;
    return {
      single: distribution(single, "ms"),
      list: distribution(list, "ms"),
      paged,
      listSize: figure(bytes / 1024 / 1024, "MB"),
      rssAfterList: figure(driver.memory().rssMb, "MB"),
    };
  } finally {
    await spawned.close();
  }
}

/** Whether background_output accepts a `limit` (pagination may land after this bench was written). */
async function offersPagination(driver: McpDriver): Promise<boolean> {
  const { tools } = await driver.listTools();
  const properties = tools.find((t) => t.name === "background_output")?.inputSchema.properties ?? {};
  return "limit" in properties;
}

async function pages(timed: (args: Record<string, unknown>) => Promise<{ ms: number }>, samples: number): Promise<Distribution> {
  const ms: number[] = [];
  for (let i = 0; i < samples; i++) ms.push((await timed({ limit: PAGE })).ms);
  return distribution(ms, "ms");
}
