import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, configKeys, loadConfigFile, parseCli, type Settings } from "../../src/config.js";
import { DEFAULT_POLICY } from "../../src/tasks/policy.js";

let dir: string;
let cwd: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "config-test-"));
  cwd = path.join(dir, "cwd");
  mkdirSync(cwd);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

let fileCount = 0;
/** Writes `content` (an object as JSON, or raw text) to a fresh file in the temp dir. */
function configFile(content: unknown): string {
  const file = path.join(dir, `config-${++fileCount}.json`);
  writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content));
  return file;
}

function settings(argv: string[], env: NodeJS.ProcessEnv = {}): Settings {
  const action = parseCli(argv, env, cwd);
  if (action.kind !== "run") throw new Error(`expected a run action, got ${action.kind}`);
  return action.settings;
}

/** The ConfigError `run` throws (fails the test if it throws nothing or something else). */
function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError, nothing was thrown");
}

function loadConfigFileError(file: string): ConfigError {
  return configError(() => loadConfigFile(file));
}

describe("parseCli defaults", () => {
  it("runs with no flags, no env and no file", () => {
    const s = settings([]);
    expect(s.opencodeUrl).toBeUndefined();
    expect(s.directory).toBe(cwd);
    expect(s.concurrency).toEqual({ default: 5, agents: {} });
    expect(s.parentPrompt).toBe(true);
    expect(s.transport).toBe("stdio");
    expect(s.opencodeAuth).toBeUndefined();
  });

  it("resolves --directory against the working directory", () => {
    expect(settings(["--directory", "project"]).directory).toBe(path.join(cwd, "project"));
    expect(settings(["--directory", "/abs/project"]).directory).toBe("/abs/project");
  });
});

describe("parseCli actions", () => {
  it("returns help for --help and version for --version", () => {
    expect(parseCli(["--help"], {}, cwd)).toEqual({ kind: "help" });
    expect(parseCli(["--version"], {}, cwd)).toEqual({ kind: "version" });
  });

  it("answers --help without reading a broken config", () => {
    const env = { BACKGROUND_AGENTS_CONFIG: path.join(dir, "missing.json") };
    expect(parseCli(["--help"], env, cwd)).toEqual({ kind: "help" });
    expect(parseCli(["--version", "--transport", "http"], env, cwd)).toEqual({ kind: "version" });
  });
});

describe("parseCli --concurrency", () => {
  it("sets the default and per-agent limits, repeatable", () => {
    expect(settings(["--concurrency", "default=3", "--concurrency", "explore=2"]).concurrency).toEqual({
      default: 3,
      agents: { explore: 2 },
    });
  });

  it("accepts the bounds 1 and 1000 and lets a later flag for the same agent win", () => {
    expect(settings(["--concurrency", "a=1", "--concurrency", "b=1000", "--concurrency", "a=4"]).concurrency).toEqual({
      default: 5,
      agents: { a: 4, b: 1000 },
    });
  });

  it.each(["x", "x=0", "x=abc", "x=1001", "x=-1", "x=1.5", "=3", "x=", "a b=2"])("refuses %j, naming it and what is allowed", (spec) => {
    const error = configError(() => parseCli(["--concurrency", spec], {}, cwd));
    expect(error.message).toContain(`"${spec}"`);
    expect(error.message).toContain("<agent>=<n>");
    expect(error.message).toMatch(/1 to 1000/);
  });
});

describe("parseCli flags and files", () => {
  it("lets flags override the config file, and keeps the file's other values", () => {
    const file = configFile({
      opencode: { url: "http://file-host:1111", directory: "/file/project" },
      concurrency: { default: 7, agents: { explore: 3, plan: 4 } },
      notifications: { parentPrompt: false },
      transport: "stdio",
      dataDir: "/file/data",
    });
    const s = settings([
      "--config",
      file,
      "--opencode-url",
      "http://flag-host:2222",
      "--directory",
      "/flag/project",
      "--concurrency",
      "explore=9",
      "--data-dir",
      "/flag/data",
    ]);
    expect(s.opencodeUrl).toBe("http://flag-host:2222");
    expect(s.directory).toBe("/flag/project");
    expect(s.concurrency).toEqual({ default: 7, agents: { explore: 9, plan: 4 } });
    expect(s.parentPrompt).toBe(false);
    expect(s.dataDir).toBe("/flag/data");
  });

  it("uses the file's values when no flag is given", () => {
    const file = configFile({
      opencode: { url: "http://file-host:1111", directory: "/file/project" },
      concurrency: { default: 2 },
      dataDir: "/file/data",
    });
    const s = settings(["--config", file]);
    expect(s.opencodeUrl).toBe("http://file-host:1111");
    expect(s.directory).toBe("/file/project");
    expect(s.concurrency).toEqual({ default: 2, agents: {} });
    expect(s.dataDir).toBe("/file/data");
    expect(s.parentPrompt).toBe(true);
  });

  it("finds the file through BACKGROUND_AGENTS_CONFIG (relative to the working directory), --config winning", () => {
    writeFileSync(path.join(cwd, "env-config.json"), JSON.stringify({ concurrency: { default: 11 } }));
    expect(settings([], { BACKGROUND_AGENTS_CONFIG: "env-config.json" }).concurrency.default).toBe(11);
    const flagged = configFile({ concurrency: { default: 12 } });
    expect(settings(["--config", flagged], { BACKGROUND_AGENTS_CONFIG: "env-config.json" }).concurrency.default).toBe(12);
  });

  it("refuses an unknown top-level key, naming it", () => {
    const file = configFile({ concurency: { default: 3 } });
    const error = configError(() => settings(["--config", file]));
    expect(error.message).toContain("concurency");
    expect(error.message).toContain(file);
    expect(loadConfigFileError(file).message).toContain("concurency");
  });

  it("refuses an unknown nested key, naming it and where it is", () => {
    const file = configFile({ opencode: { url: "http://127.0.0.1:4096", port: 4096 } });
    const error = configError(() => settings(["--config", file]));
    expect(error.message).toContain("port");
    expect(error.message).toContain("opencode");
  });

  it("refuses a bad value in the file, naming its path", () => {
    const file = configFile({ concurrency: { agents: { explore: 0 } } });
    const error = configError(() => settings(["--config", file]));
    expect(error.message).toContain("concurrency.agents.explore");
  });

  it("refuses invalid JSON, naming the file", () => {
    const file = configFile('{ "concurrency": { "default": 3, } ');
    const error = configError(() => settings(["--config", file]));
    expect(error.message).toContain(file);
  });

  it("refuses a missing file, naming it", () => {
    const missing = path.join(dir, "nope.json");
    const error = configError(() => settings(["--config", missing]));
    expect(error.message).toContain(missing);
  });
});

describe("parseCli opencode URL and auth", () => {
  it("takes OPENCODE_URL from the environment, over the file, under the flag", () => {
    const file = configFile({ opencode: { url: "http://file-host:1" } });
    expect(settings([], { OPENCODE_URL: "http://env-host:2" }).opencodeUrl).toBe("http://env-host:2");
    expect(settings(["--config", file], { OPENCODE_URL: "http://env-host:2" }).opencodeUrl).toBe("http://env-host:2");
    expect(settings(["--opencode-url", "http://flag-host:3"], { OPENCODE_URL: "http://env-host:2" }).opencodeUrl).toBe(
      "http://flag-host:3",
    );
  });

  it("drops trailing slashes from the URL", () => {
    expect(settings(["--opencode-url", "http://127.0.0.1:4096//"]).opencodeUrl).toBe("http://127.0.0.1:4096");
  });

  it("refuses a URL that is not one, naming it", () => {
    const error = configError(() => settings([], { OPENCODE_URL: "not a url" }));
    expect(error.message).toContain("not a url");
  });

  it("uses OPENCODE_SERVER_PASSWORD for Basic auth with the default user opencode", () => {
    expect(settings([], { OPENCODE_SERVER_PASSWORD: "s3cret" }).opencodeAuth).toEqual({ username: "opencode", password: "s3cret" });
  });

  it("uses OPENCODE_SERVER_USERNAME when set", () => {
    expect(settings([], { OPENCODE_SERVER_PASSWORD: "pw", OPENCODE_SERVER_USERNAME: "admin" }).opencodeAuth).toEqual({
      username: "admin",
      password: "pw",
    });
  });

  it("sends no auth without a password (a username alone is not enough)", () => {
    expect(settings([], { OPENCODE_SERVER_USERNAME: "admin" }).opencodeAuth).toBeUndefined();
    expect(settings([], { OPENCODE_SERVER_PASSWORD: "" }).opencodeAuth).toBeUndefined();
  });
});

describe("parseCli refusals", () => {
  it("refuses an unknown flag, naming it", () => {
    const error = configError(() => parseCli(["--concurency", "x=1"], {}, cwd));
    expect(error.message).toContain("--concurency");
  });

  it("refuses positional arguments", () => {
    configError(() => parseCli(["serve"], {}, cwd));
  });

  it("refuses a flag without its value", () => {
    configError(() => parseCli(["--config"], {}, cwd));
  });

  it("refuses a transport other than stdio or http, naming it and what is allowed", () => {
    const error = configError(() => parseCli(["--transport", "sse"], {}, cwd));
    expect(error.message).toContain("sse");
    expect(error.message).toContain("stdio, http");
  });

  it("refuses a transport other than stdio or http in the file", () => {
    const file = configFile({ transport: "sse" });
    const error = configError(() => settings(["--config", file]));
    expect(error.message).toContain("transport");
  });
});

describe("parseCli --claude-channel", () => {
  it("is off by default, on with the flag or notifications.claudeChannel, and the flag wins over the file", () => {
    expect(settings([]).claudeChannel).toBe(false);
    expect(settings(["--claude-channel"]).claudeChannel).toBe(true);
    expect(settings(["--config", configFile({ notifications: { claudeChannel: true } })]).claudeChannel).toBe(true);
    expect(settings(["--config", configFile({ notifications: { claudeChannel: false } }), "--claude-channel"]).claudeChannel).toBe(true);
    expect(loadConfigFileError(configFile({ notifications: { claudeChannel: "yes" } })).message).toContain("notifications.claudeChannel");
  });
});

describe("config file settings reach the settings", () => {
  it("uses the schema's defaults without a file", () => {
    const s = settings([]);
    expect(s.policy).toEqual(DEFAULT_POLICY);
    expect(s.policy).toMatchObject({ taskTimeoutMs: 1_800_000, stallMs: 300_000, onPermission: "reject", maxDepth: 3 });
    expect(s.retention).toEqual({ maxAgeDays: 7, maxTasks: 10_000 });
    expect(s.resumeInterrupted).toBe(false);
  });

  it("reads every task policy setting from the file, defaults filling what it leaves out", () => {
    const file = configFile({
      timeouts: { taskMs: 0, stallMs: 60_000 },
      permissions: { onAsk: "wait" },
      todos: { continuations: 0 },
      limits: { maxToolCalls: 7, maxRepeatedToolCalls: 3, maxQueuedPerAgent: 9, maxResultChars: 2_000, maxDepth: 10 },
    });
    expect(settings(["--config", file]).policy).toEqual({
      taskTimeoutMs: 0,
      stallMs: 60_000,
      onPermission: "wait",
      todoContinuations: 0,
      maxToolCalls: 7,
      maxRepeatedToolCalls: 3,
      maxQueuedPerAgent: 9,
      maxResultChars: 2_000,
      maxDepth: 10,
    });
    const partial = configFile({ limits: { maxDepth: 1 }, retention: { maxTasks: 50 }, recovery: { resumeInterrupted: true } });
    const s = settings(["--config", partial]);
    expect(s.policy).toEqual({ ...DEFAULT_POLICY, maxDepth: 1 });
    expect(s.retention).toEqual({ maxAgeDays: 7, maxTasks: 50 });
    expect(s.resumeInterrupted).toBe(true);
  });

  it("lists every key of the schema as allowed when refusing an unknown one", () => {
    const message = loadConfigFileError(configFile({ limits: { maxDepht: 2 } })).message;
    expect(message).toContain('Unrecognized key: "maxDepht"');
    const allowed = /allowed keys: (.*)$/.exec(message)![1]!;
    const listed = [...allowed.matchAll(/(\w+)(?:\.\{([^}]*)\}|\.(\w+))?/g)].flatMap(([, section, several, one]) =>
      several ? several.split(",").map((key) => `${section}.${key}`) : one ? [`${section}.${one}`] : [section!],
    );
    expect(listed).toEqual(configKeys());
    expect(listed).toContain("limits.maxDepth");
  });
});
