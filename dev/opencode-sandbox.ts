// Starts a real, isolated `opencode serve` whose only model is a ScriptedModel.
// Isolation: a fresh temp root holds the project directory and all XDG dirs,
// so nothing is read from or written to the developer's own opencode setup.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startEmbeddedOpencode } from "../src/opencode/embedded.js";

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
  /** Top-level opencode.json keys to set over the sandbox defaults (e.g. a stricter `permission`). */
  overrides?: Record<string, unknown>;
  /** A fixed port, e.g. when the config must name the server's own URL; default: a free one. */
  port?: number;
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

/**
 * Creates `<root>/project` with an opencode.json wired to `modelUrl`, plus
 * fresh XDG dirs under `<root>/xdg`, and returns the isolating environment.
 */
export function writeSandboxProject(
  root: string,
  modelUrl: string,
  agents?: Record<string, SandboxAgent>,
  overrides: Record<string, unknown> = {},
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
  writeFileSync(path.join(directory, "opencode.json"), JSON.stringify({ ...sandboxConfig(modelUrl, agents), ...overrides }, null, 2));
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

export async function startOpencodeSandbox(options: OpencodeSandboxOptions): Promise<OpencodeSandbox> {
  const root = mkdtempSync(path.join(os.tmpdir(), "opencode-sandbox-"));
  try {
    const project = writeSandboxProject(root, options.modelUrl, options.agents, options.overrides);
    const env = { ...project.env };
    if (options.sharedConfigHome !== undefined) {
      mkdirSync(options.sharedConfigHome, { recursive: true });
      env.XDG_CONFIG_HOME = options.sharedConfigHome;
    }
    if (options.password !== undefined) env.OPENCODE_SERVER_PASSWORD = options.password;

    const opencode = await startEmbeddedOpencode({
      directory: project.directory,
      env: { ...process.env, ...options.env, ...env },
      timeoutMs: START_TIMEOUT_MS,
      ...(options.port === undefined ? {} : { port: options.port }),
    });
    const url = opencode.url;
    const stop = async (): Promise<void> => {
      await opencode.stop();
      rmSync(root, { recursive: true, force: true });
    };
    return { url, directory: project.directory, env, stop };
  } catch (error) {
    rmSync(root, { recursive: true, force: true });
    throw error;
  }
}
