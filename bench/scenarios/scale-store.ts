// 5b. Scale, stored: S finished tasks in the data dir. Start-up (recovery) time, then background_output
// single-task reads and listing, as round trips at the MCP client.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Backend } from "../backend.js";
import { nowMs } from "../../dev/model-server.js";
import type { Profile } from "../profile.js";
import type { ScenarioResult } from "../report.js";
import { seededRandom } from "../rng.js";
import { spawnSide } from "../sides.js";
import { writeFinishedTasks } from "../store-fixture.js";
import { distribution, figure, type Distribution, type Figure } from "../stats.js";

/** background_output's largest page. */
const LARGE_PAGE = 500;

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
    return {
      name: `5b. scale: ${stored} finished tasks stored`,
      rows: [
        { metric: "start -> first tools/list, empty store", ours: empty.toToolsList, seed: null, note: "seed: no store" },
        { metric: `start -> first tools/list, ${stored} stored`, ours: full.toToolsList, seed: null },
        { metric: `task manager start (server log), ${stored} stored`, ours: full.managerStart, seed: null },
        { metric: "background_output single task", ours: reads.single, seed: null },
        { metric: "background_output list: every default page, newest to oldest", ours: reads.walk, seed: null },
        { metric: "  all pages together", ours: reads.walkTotal, seed: null },
        { metric: "  one default page, size", ours: reads.pageSize, seed: null },
        { metric: `background_output list: first page of ${LARGE_PAGE}`, ours: reads.largePage, seed: null },
        { metric: "server RSS after listing", ours: reads.rssAfterList, seed: null },
      ],
      budgets: [],
      details: {
        stored: figure(stored, "tasks"),
        fixture_write: figure(fixture.writeMs, "ms"),
      },
      notes: [
        "Stored tasks are written with the server's own SqliteTaskStore, createTask and transition; a --config raises retention.maxTasks so that start-up pruning (default: keep 10,000) keeps them all.",
        "Start-up: spawn -> first successful tools/list at the client, and the server's own 'task manager started' ms (store open and migrate, recovery, retention prune).",
        "List: background_output without task_id returns one page (default 50 tasks) and a next_cursor; the bench follows next_cursor from the newest page to the oldest, so the distribution covers every depth. Round trips include the client's JSON parse and its validation against the tool's outputSchema, as any SDK client does.",
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
  /** Every default-size page, walked from the newest to the oldest by next_cursor. */
  walk: Distribution;
  walkTotal: Figure;
  largePage: Distribution;
  pageSize: Figure;
  rssAfterList: Figure;
}

interface Page {
  ms: number;
  bytes: number;
  tasks: number;
  next: string | null;
}

async function readAndList(backend: Backend, profile: Profile, dataDir: string, configFile: string, ids: string[]): Promise<Reads> {
  const { readSamples } = profile.scale;
  const spawned = await spawnSide("ours", backend, { concurrency: {}, dataDir, configFile });
  const { driver } = spawned;
  const page = async (args: Record<string, unknown>): Promise<Page> => {
    const start = nowMs();
    const result = await driver.call("background_output", args, 600_000);
    const ms = nowMs() - start;
    const out = result.structuredContent as { tasks?: unknown[]; next_cursor?: string | null };
    return { ms, bytes: Buffer.byteLength(JSON.stringify(result)), tasks: out.tasks?.length ?? 0, next: out.next_cursor ?? null };
  };
  try {
    const random = seededRandom(5);
    const single: number[] = [];
    for (let i = 0; i < readSamples; i++) single.push((await page({ task_id: ids[Math.floor(random() * ids.length)]! })).ms);
    // The whole list, one default page after another: deep pages cost more (the store pages by OFFSET).
    const walk: Page[] = [];
    for (let cursor: string | null | undefined; cursor !== null; cursor = walk.at(-1)!.next) {
      walk.push(await page(cursor === undefined ? {} : { cursor }));
    }
    const listed = walk.reduce((n, p) => n + p.tasks, 0);
    if (listed !== ids.length) throw new Error(`walking background_output's pages listed ${listed} of ${ids.length} stored tasks`);
    const large: number[] = [];
    for (let i = 0; i < readSamples; i++) large.push((await page({ limit: LARGE_PAGE })).ms);
    return {
      single: distribution(single, "ms"),
      walk: distribution(walk.map((p) => p.ms), "ms"),
      walkTotal: figure(walk.reduce((t, p) => t + p.ms, 0), "ms"),
      largePage: distribution(large, "ms"),
      pageSize: figure(walk[0]!.bytes / 1024, "KB"),
      rssAfterList: figure(driver.memory().rssMb, "MB"),
    };
  } finally {
    await spawned.close();
  }
}
