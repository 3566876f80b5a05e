// The two servers under comparison, spawned the same way: node, stdio, attached to the bench's opencode
// (directly, or through a counting proxy), with per-agent concurrency limits.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Backend } from "./backend.js";
import { McpDriver } from "./mcp-driver.js";
import { OUR_CLI, SEED_SERVER } from "./paths.js";

export type Side = "ours" | "seed";
export const SIDES: readonly Side[] = ["ours", "seed"];

export interface SpawnOptions {
  /** Seed only: its poll period (quick mode shortens it). */
  seedPollMs?: number;
  concurrency: Record<string, number>;
  /** Default: the sandbox's opencode itself. */
  opencodeUrl?: string;
  /** Ours only: use this data dir (kept) instead of a fresh one (removed on close). */
  dataDir?: string;
  /** Ours only: a --config file. */
  configFile?: string;
}

export interface Spawned {
  driver: McpDriver;
  close(): Promise<void>;
}

export async function spawnSide(side: Side, backend: Backend, options: SpawnOptions): Promise<Spawned> {
  const common = [
    "--opencode-url",
    options.opencodeUrl ?? backend.opencode.url,
    "--directory",
    backend.opencode.directory,
    ...Object.entries(options.concurrency).flatMap(([agent, n]) => ["--concurrency", `${agent}=${n}`]),
  ];
  if (side === "seed") {
    const poll = options.seedPollMs ? ["--poll-ms", String(options.seedPollMs)] : [];
    const driver = await McpDriver.spawn("seed", SEED_SERVER, [...common, ...poll]);
    return { driver, close: () => driver.close() };
  }
  const fresh = options.dataDir === undefined ? mkdtempSync(join(tmpdir(), "bench-data-")) : undefined;
  const args = [...common, "--data-dir", options.dataDir ?? fresh!, ...(options.configFile ? ["--config", options.configFile] : [])];
  // info level: the start-up line "task manager started" carries the recovery time.
  const driver = await McpDriver.spawn("ours", OUR_CLI, args, { BACKGROUND_AGENTS_LOG_LEVEL: "info" });
  return {
    driver,
    async close() {
      await driver.close();
      if (fresh) rmSync(fresh, { recursive: true, force: true });
    },
  };
}
