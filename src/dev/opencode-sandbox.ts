// Starts a real, isolated `opencode serve` whose only model is a ScriptedModel.
// Isolation: a fresh temp root holds the project directory and all XDG dirs,
// so nothing is read from or written to the developer's own opencode setup.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export interface SandboxAgent {
  description?: string;
  prompt?: string;
}

export interface OpencodeSandbox {
  url: string;
  /** Project directory sessions work in (holds opencode.json). */
  directory: string;
  /** Exactly the variables that isolate opencode; merge over process.env to spawn another. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export interface OpencodeSandboxOptions {
  modelUrl: string;
  agents?: Record<string, SandboxAgent>;
  password?: string;
  /** Extra variables for the opencode process only (not part of the returned env). */
  env?: Record<string, string>;
  /**
   * Use this XDG_CONFIG_HOME instead of a fresh one. opencode installs
   * `@opencode-ai/plugin` there on first use; sharing it skips that install.
   */
  sharedConfigHome?: string;
}

const MODEL = "mock/mock-model";
const DEFAULT_AGENTS: Record<string, SandboxAgent> = {
  alpha: { description: "Test agent alpha" },
  beta: { description: "Test agent beta" },
};
const START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;

/**
 * Creates `<root>/project` with an opencode.json wired to `modelUrl`, plus
 * fresh XDG dirs under `<root>/xdg`, and returns the isolating environment.
 */
export function writeSandboxProject(
  root: string,
  modelUrl: string,
  agents?: Record<string, SandboxAgent>,
): { directory: string; env: Record<string, string> } {
  const directory = path.join(root, "project");
  const xdg = (name: string): string => {
    const dir = path.join(root, "xdg", name);
    mkdirSync(dir, { recursive: true });
    return dir;
  };
  mkdirSync(directory, { recursive: true });
  const env: Record<string, string> = {
    XDG_DATA_HOME: xdg("data"),
    XDG_CONFIG_HOME: xdg("config"),
    XDG_CACHE_HOME: xdg("cache"),
    XDG_STATE_HOME: xdg("state"),
    OPENCODE_DISABLE_MODELS_FETCH: "1",
  };
  writeFileSync(path.join(directory, "opencode.json"), JSON.stringify(sandboxConfig(modelUrl, agents), null, 2));
  return { directory, env };
}

function sandboxConfig(modelUrl: string, agents: Record<string, SandboxAgent> = DEFAULT_AGENTS): object {
  const agentConfig: Record<string, object> = {};
  for (const [name, agent] of Object.entries(agents)) {
    agentConfig[name] = {
      mode: "subagent",
      description: agent.description ?? `Sandbox agent ${name}`,
      model: MODEL,
      ...(agent.prompt !== undefined ? { prompt: agent.prompt } : {}),
    };
  }
  return {
    $schema: "https://opencode.ai/config.json",
    model: MODEL,
    small_model: MODEL,
    share: "disabled",
    autoupdate: false,
    // Background runs have nobody to answer permission.asked, so never ask.
    permission: { external_directory: "allow", doom_loop: "allow" },
    provider: {
      mock: {
        npm: "@ai-sdk/openai-compatible",
        name: "Mock",
        // No headerTimeout/chunkTimeout: a scripted `hold` must not turn into
        // opencode retries; the 300 s defaults are far beyond any test.
        options: { baseURL: modelUrl, apiKey: "x" },
        models: { "mock-model": { name: "Mock Model", tool_call: true } },
      },
    },
    agent: agentConfig,
  };
}

/** Walks up from this module (src/dev or dist/dev) to the dir holding the opencode binary. */
function opencodeBinary(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, "node_modules", ".bin", "opencode");
    if (existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("opencode binary not found in any node_modules/.bin above " + import.meta.url);
    dir = parent;
  }
}

/** Asks the OS for a free port; opencode's own `--port 0` prefers 4096. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function startOpencodeSandbox(options: OpencodeSandboxOptions): Promise<OpencodeSandbox> {
  const root = mkdtempSync(path.join(os.tmpdir(), "opencode-sandbox-"));
  try {
    const project = writeSandboxProject(root, options.modelUrl, options.agents);
    const env = { ...project.env };
    if (options.sharedConfigHome !== undefined) {
      mkdirSync(options.sharedConfigHome, { recursive: true });
      env.XDG_CONFIG_HOME = options.sharedConfigHome;
    }
    if (options.password !== undefined) env.OPENCODE_SERVER_PASSWORD = options.password;

    const port = await freePort();
    const child = spawn(opencodeBinary(), ["serve", "--hostname", "127.0.0.1", "--port", String(port)], {
      cwd: project.directory,
      env: { ...process.env, ...options.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const url = await waitForListening(child);
    const stop = async (): Promise<void> => {
      await stopProcess(child);
      rmSync(root, { recursive: true, force: true });
    };
    return { url, directory: project.directory, env, stop };
  } catch (error) {
    rmSync(root, { recursive: true, force: true });
    throw error;
  }
}

function waitForListening(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    const fail = (reason: string): void => {
      cleanup();
      child.kill("SIGKILL");
      const tail = stderr.trim().split("\n").slice(-20).join("\n");
      reject(new Error(`opencode serve ${reason}\nstderr tail:\n${tail}\nstdout:\n${stdout.slice(-2000)}`));
    };
    const onStdout = (data: Buffer): void => {
      stdout += data.toString();
      const match = /opencode server listening on (http:\/\/\S+)/.exec(stdout);
      if (match?.[1] !== undefined) {
        cleanup();
        // Keep draining the pipes so a chatty server never blocks on a full buffer.
        child.stdout?.resume();
        child.stderr?.resume();
        resolve(match[1]);
      }
    };
    const onStderr = (data: Buffer): void => {
      stderr = (stderr + data.toString()).slice(-20_000);
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
      fail(`exited before listening (code ${String(code)}, signal ${String(signal)})`);
    const onError = (error: Error): void => fail(`failed to spawn: ${error.message}`);
    const timer = setTimeout(() => fail(`did not report listening within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout?.off("data", onStdout);
      child.stderr?.off("data", onStderr);
      child.off("exit", onExit);
      child.off("error", onError);
    };
    child.stdout?.on("data", onStdout);
    child.stderr?.on("data", onStderr);
    child.once("exit", onExit);
    child.once("error", onError);
  });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}
