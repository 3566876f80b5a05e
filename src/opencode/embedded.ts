import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { log } from "../log.js";

/** A running `opencode serve` started by us; `stop()` ends it. */
export interface EmbeddedOpencode {
  url: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** The pinned opencode binary from the `opencode-ai` dependency; OPENCODE_BIN overrides it. */
export function opencodeBinary(env: NodeJS.ProcessEnv = process.env): string {
  if (env.OPENCODE_BIN) return env.OPENCODE_BIN;
  const pkg = createRequire(import.meta.url).resolve("opencode-ai/package.json");
  return join(dirname(pkg), "bin", "opencode.exe");
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const GUARD = `exec 3<&0
"$@" </dev/null &
child=$!
trap 'kill $child 2>/dev/null; wait $child; exit 0' TERM INT HUP
(cat <&3 >/dev/null; kill $child 2>/dev/null) &
wait $child`;

export interface EmbeddedOptions {
  directory: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** A fixed port (a restart keeps its URL); default: a free one. */
  port?: number;
}

const LISTENING = /opencode server listening on (http:\/\/\S+)/;

/**
 * Spawns `opencode serve --hostname 127.0.0.1 --port <free port>` in `directory` and resolves with its
 * URL once it prints its "listening on" line.
 */
export async function startEmbeddedOpencode(options: EmbeddedOptions): Promise<EmbeddedOpencode> {
  const port = options.port ?? (await freePort());
  const binary = opencodeBinary(options.env);
  const args = ["serve", "--hostname", "127.0.0.1", "--port", String(port)];
  const env = options.env ?? process.env;
  // opencode's runtime (Bun) sends at most 256 HTTP requests at once by default, which would cap the
  // tasks at the model at 256 whatever the concurrency limits say.
  const spawnOptions: SpawnOptions = {
    cwd: options.directory,
    env: { ...env, BUN_CONFIG_MAX_HTTP_REQUESTS: env.BUN_CONFIG_MAX_HTTP_REQUESTS ?? "4096" },
    stdio: "pipe",
  };
  // On POSIX a small sh guard holds the read end of a pipe from us: when this server exits, however it
  // exits (SIGKILL included), the pipe closes and the guard stops opencode, so no orphan keeps running.
  const child: ChildProcess =
    process.platform === "win32"
      ? spawn(binary, args, spawnOptions)
      : spawn("/bin/sh", ["-c", GUARD, "opencode-guard", binary, ...args], spawnOptions);
  let output = "";
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => fail(new Error(`opencode did not start within ${options.timeoutMs ?? 60_000} ms`)),
      options.timeoutMs ?? 60_000,
    );
    const onData = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-4_000);
      const match = LISTENING.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    const fail = (error: Error): void => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`${error.message} (${binary} serve in ${options.directory}); its output:\n${output.trim()}`));
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("error", fail);
    child.once("exit", (code, signal) => fail(new Error(`opencode exited early (code ${code}, signal ${signal})`)));
  });
  child.removeAllListeners("exit");
  child.stdout!.removeAllListeners("data");
  child.stderr!.removeAllListeners("data");
  // Keep draining its output so a full pipe never blocks it; forward only at debug level.
  child.stdout!.on("data", (chunk: Buffer) => log.debug("opencode", { out: chunk.toString().trim() }));
  child.stderr!.on("data", (chunk: Buffer) => log.debug("opencode", { err: chunk.toString().trim() }));
  child.once("exit", (code, signal) => log.info("embedded opencode exited", { code, signal }));
  log.info("embedded opencode started", { url, directory: options.directory, pid: child.pid });
  return { url, process: child, stop: () => stopChild(child) };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

/**
 * Keeps an embedded opencode running: when it dies unexpectedly it is started again on the same port
 * (so its URL, and our event stream, carry on), at most `maxRestarts` times. After that the failure is
 * reported and left: reads keep working, launches say opencode is unreachable.
 */
export class OpencodeSupervisor {
  readonly url: string;
  restarts = 0;
  #current: EmbeddedOpencode;
  #stopping = false;
  readonly #options: EmbeddedOptions & { port: number };
  readonly #maxRestarts: number;

  private constructor(first: EmbeddedOpencode, options: EmbeddedOptions & { port: number }, maxRestarts: number) {
    this.url = first.url;
    this.#current = first;
    this.#options = options;
    this.#maxRestarts = maxRestarts;
    this.#watch(first);
  }

  static async start(options: EmbeddedOptions, maxRestarts = 3): Promise<OpencodeSupervisor> {
    const port = options.port ?? (await freePort());
    const first = await startEmbeddedOpencode({ ...options, port });
    return new OpencodeSupervisor(first, { ...options, port }, maxRestarts);
  }

  get pid(): number | undefined {
    return this.#current.process.pid;
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#current.stop();
  }

  #watch(instance: EmbeddedOpencode): void {
    instance.process.once("exit", () => {
      if (!this.#stopping) void this.#restart();
    });
  }

  async #restart(): Promise<void> {
    while (!this.#stopping && this.restarts < this.#maxRestarts) {
      this.restarts++;
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** (this.restarts - 1)));
      if (this.#stopping) return;
      try {
        this.#current = await startEmbeddedOpencode(this.#options);
        log.warn("embedded opencode died and was restarted", { url: this.url, restarts: this.restarts });
        this.#watch(this.#current);
        return;
      } catch (error) {
        log.error("embedded opencode could not be restarted", { url: this.url, attempt: this.restarts, error: String(error) });
      }
    }
    if (!this.#stopping) {
      log.error("embedded opencode is down and will not be restarted again; tasks cannot run until this server restarts", {
        url: this.url,
        restarts: this.restarts,
      });
    }
  }
}
