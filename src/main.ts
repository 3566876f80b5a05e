import { ConfigError, parseCli, USAGE } from "./config.js";
import { StoreError } from "./tasks/sqlite-store.js";
import { log } from "./log.js";
import { startRuntime, type Runtime } from "./runtime.js";
import { HttpListenError, serveHttp, type HttpTransport } from "./transport/http.js";
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
  const { settings } = action;
  const runtime = await startRuntime(settings);
  let http: HttpTransport | undefined;
  // Stop accepting and end the MCP sessions, then the runtime. Running opencode sessions are left
  // alone: their tasks stay in the store and are picked up again on the next start.
  const stop = once(async (why: string) => {
    log.info("shutting down", { why });
    await http?.close();
    await runtime.close();
  });
  process.once("SIGINT", () => void stop("SIGINT").then(() => process.exit(0)));
  process.once("SIGTERM", () => void stop("SIGTERM").then(() => process.exit(0)));
  if (settings.transport === "http") {
    try {
      http = await serveHttp(runtime, settings.http!);
    } catch (error) {
      await stop("the HTTP transport did not start");
      throw error;
    }
    // Serves until a signal; the listener keeps the process alive.
    return new Promise<number>(() => undefined);
  }
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
    if (error instanceof ConfigError || error instanceof StoreError || error instanceof HttpListenError) process.stderr.write(`background-agents-mcp: ${error.message}\n`);
    else process.stderr.write(`background-agents-mcp: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(error instanceof ConfigError ? 2 : 1);
  },
);

export type { Runtime };
