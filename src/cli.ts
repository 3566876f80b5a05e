#!/usr/bin/env node
import { ConfigError, parseCli, USAGE } from "./config.js";
import { StoreError } from "./tasks/sqlite-store.js";
import { log } from "./log.js";
import { startRuntime, type Runtime } from "./runtime.js";
import { serveStdio } from "./transport/stdio.js";
import { VERSION } from "./version.js";

async function main(): Promise<number> {
  const action = parseCli(process.argv.slice(2), process.env, process.cwd());
  if (action.kind === "help") {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (action.kind === "version") {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const runtime = await startRuntime(action.settings);
  const stop = once(async (why: string) => {
    log.info("shutting down", { why });
    await runtime.close();
  });
  process.once("SIGINT", () => void stop("SIGINT").then(() => process.exit(0)));
  process.once("SIGTERM", () => void stop("SIGTERM").then(() => process.exit(0)));
  await serveStdio(runtime);
  await stop("stdin closed");
  return 0;
}

function once(fn: (why: string) => Promise<void>): (why: string) => Promise<void> {
  let running: Promise<void> | undefined;
  return (why) => (running ??= fn(why));
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError || error instanceof StoreError) process.stderr.write(`background-agents-mcp: ${error.message}\n`);
    else process.stderr.write(`background-agents-mcp: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(error instanceof ConfigError ? 2 : 1);
  },
);

export type { Runtime };
