import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { z } from "zod";
import type { ConcurrencyLimits } from "./tasks/agent-queues.js";
import { defaultDataDir } from "./tasks/data-dir.js";
import { PolicySections, policyFrom, type TaskPolicy } from "./tasks/policy.js";
import { AuthFileConfig, HttpFileConfig, HttpSettingsError, resolveHttpSettings, type HttpSettings } from "./transport/http-settings.js";

/** A configuration problem the user must fix; the message names what was wrong and what is allowed. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

const Limit = z.number().int().min(1).max(1_000);

/**
 * The JSON config file (`--config`): every setting declared once, with its default (`.default`) and what
 * it means (`.describe`). Every level is strict: an unknown key is an error that names it. Parsing `{}`
 * gives the defaults (CONFIG_DEFAULTS); a setting without a default here has one only known at run time.
 */
export const ConfigFile = z.strictObject({
  opencode: z
    .strictObject({
      url: z.url().optional().describe("Attach to this opencode server; without it, an embedded opencode is started"),
      directory: z.string().min(1).optional().describe("The project the sessions work in (default: the current directory)"),
    })
    .prefault({}),
  concurrency: z
    .strictObject({
      default: Limit.default(5).describe("Sessions per agent at once, for agents not listed"),
      agents: z.record(z.string().min(1), Limit).optional().describe("Sessions at once for the agents named"),
    })
    .prefault({}),
  notifications: z
    .strictObject({
      parentPrompt: z.boolean().default(true).describe("Prompt the parent session when a task ends"),
      claudeChannel: z
        .boolean()
        .default(false)
        .describe('Act as a Claude Code channel: declare experimental "claude/channel" and push a channel event when a task ends'),
    })
    .prefault({}),
  transport: z.enum(["stdio", "http"]).default("stdio").describe("The MCP transport"),
  http: HttpFileConfig.prefault({}).describe("Streamable HTTP transport: host, port"),
  auth: AuthFileConfig.prefault({}).describe("Bearer tokens for the HTTP transport, by owner"),
  dataDir: z.string().min(1).optional().describe("Where task state is kept (default: the per-user data directory)"),
  retention: z
    .strictObject({
      maxAgeDays: z.number().positive().default(7).describe("Finished tasks older than this are pruned"),
      maxTasks: z.number().int().min(1).default(10_000).describe("At most this many tasks are kept, oldest finished pruned first"),
    })
    .prefault({}),
  ...PolicySections,
  recovery: z
    .strictObject({
      resumeInterrupted: z
        .boolean()
        .default(false)
        .describe("After a restart, continue sessions our embedded opencode was running instead of ending them"),
    })
    .prefault({}),
});
export type ConfigFile = z.output<typeof ConfigFile>;

/** What a config file that sets nothing means. */
export const CONFIG_DEFAULTS: ConfigFile = ConfigFile.parse({});

/** Every setting of the config file as a dotted path ("limits.maxDepth"), in the order declared. */
export function configKeys(schema: z.ZodType = ConfigFile, prefix = ""): string[] {
  let inner: z.ZodType = schema;
  while (inner instanceof z.ZodOptional || inner instanceof z.ZodDefault || inner instanceof z.ZodPrefault) inner = inner.unwrap() as z.ZodType;
  if (!(inner instanceof z.ZodObject)) return [prefix];
  return Object.entries(inner.shape as Record<string, z.ZodType>).flatMap(([key, child]) => configKeys(child, prefix ? `${prefix}.${key}` : key));
}

/** The keys a config file may have, for an error message: "opencode.{url,directory}, transport, ...". */
function allowedKeys(): string {
  const sections = new Map<string, string[]>();
  for (const key of configKeys()) {
    const [section, ...rest] = key.split(".");
    const keys = sections.get(section!) ?? [];
    if (rest.length) keys.push(rest.join("."));
    sections.set(section!, keys);
  }
  return [...sections]
    .map(([section, keys]) => (keys.length === 0 ? section : keys.length === 1 ? `${section}.${keys[0]}` : `${section}.{${keys.join(",")}}`))
    .join(", ");
}

export interface Settings {
  /** Attach here; undefined = spawn an embedded `opencode serve`. */
  opencodeUrl: string | undefined;
  directory: string;
  concurrency: ConcurrencyLimits;
  parentPrompt: boolean;
  /** Declare the `claude/channel` capability and send `notifications/claude/channel` when a task ends. */
  claudeChannel: boolean;
  transport: "stdio" | "http";
  /** Listen address and tokens; set when transport is "http". */
  http: HttpSettings | undefined;
  dataDir: string;
  retention: ConfigFile["retention"];
  resumeInterrupted: boolean;
  policy: TaskPolicy;
  /** HTTP Basic credentials for opencode (OPENCODE_SERVER_PASSWORD / OPENCODE_SERVER_USERNAME). */
  opencodeAuth: { username: string; password: string } | undefined;
}

export const USAGE = `Usage: background-agents-mcp [options]

Runs opencode agent sessions in the background for any MCP client (MCP over stdio, or Streamable HTTP).

Options:
  --opencode-url <url>     attach to a running opencode server (env OPENCODE_URL);
                           without it, an embedded "opencode serve" is started in --directory
  --directory <dir>        the project the sessions work in (default: the current directory)
  --config <file>          JSON config file (env BACKGROUND_AGENTS_CONFIG); flags override it
  --concurrency <agent=n>  sessions of one agent at once (repeatable); default=n sets it for agents not
                           named (default ${CONFIG_DEFAULTS.concurrency.default})
  --transport stdio|http   MCP transport (default ${CONFIG_DEFAULTS.transport}); http serves Streamable HTTP at /mcp
  --host <address>         HTTP: address to listen on (default ${CONFIG_DEFAULTS.http.host}); other than loopback needs a token
  --port <n>               HTTP: port to listen on (default ${CONFIG_DEFAULTS.http.port}; 0 picks a free one)
  --token <token>          HTTP: bearer token clients must send (env BACKGROUND_AGENTS_TOKEN; its owner is
                           "default"); several owners: "auth" in the config file
  --data-dir <dir>         where task state is kept (env BACKGROUND_AGENTS_DATA_DIR;
                           default: the per-user data directory, e.g. ~/.local/share/background-agents-mcp)
  --claude-channel         act as a Claude Code channel: a <channel> event reaches the model when a task ends
                           (start Claude Code with --dangerously-load-development-channels server:<name>)
  --help                   show this help
  --version                show the version

Environment:
  OPENCODE_SERVER_PASSWORD, OPENCODE_SERVER_USERNAME (default "opencode"): HTTP Basic auth for opencode
  BACKGROUND_AGENTS_LOG_LEVEL: debug | info | warn | error (stderr; default info)`;

/** The command-line flags; USAGE describes each. */
export const CLI_OPTIONS = {
  "opencode-url": { type: "string" },
  directory: { type: "string" },
  config: { type: "string" },
  concurrency: { type: "string", multiple: true },
  transport: { type: "string" },
  host: { type: "string" },
  port: { type: "string" },
  token: { type: "string" },
  "data-dir": { type: "string" },
  "claude-channel": { type: "boolean" },
  help: { type: "boolean" },
  version: { type: "boolean" },
} as const satisfies ParseArgsConfig["options"];

export type CliAction = { kind: "help" } | { kind: "version" } | { kind: "run"; settings: Settings };

export function parseCli(argv: string[], env: NodeJS.ProcessEnv, cwd: string): CliAction {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, strict: true, allowPositionals: false, options: CLI_OPTIONS }).values;
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}\n\n${USAGE}`);
  }
  if (parsed.help) return { kind: "help" };
  if (parsed.version) return { kind: "version" };

  const configPath = parsed.config ?? env.BACKGROUND_AGENTS_CONFIG;
  const file = configPath ? loadConfigFile(resolve(cwd, configPath)) : CONFIG_DEFAULTS;

  const transport = parsed.transport ?? file.transport;
  if (transport !== "stdio" && transport !== "http") throw new ConfigError(`--transport "${transport}" is not supported; allowed: stdio, http`);
  const httpOnly = (["host", "port", "token"] as const).filter((flag) => parsed[flag] !== undefined);
  if (transport !== "http" && httpOnly.length) throw new ConfigError(`--${httpOnly[0]} applies to --transport http only`);
  let http: HttpSettings | undefined;
  try {
    if (transport === "http") http = resolveHttpSettings({ flags: { host: parsed.host, port: parsed.port, token: parsed.token }, env, file, cwd });
  } catch (error) {
    throw error instanceof HttpSettingsError ? new ConfigError(error.message) : error;
  }

  const concurrency: ConcurrencyLimits = { default: file.concurrency.default, agents: { ...file.concurrency.agents } };
  for (const spec of parsed.concurrency ?? []) {
    const [agent, limit] = parseConcurrency(spec);
    if (agent === "default") concurrency.default = limit;
    else concurrency.agents[agent] = limit;
  }

  const opencodeUrl = parsed["opencode-url"] ?? env.OPENCODE_URL ?? file.opencode.url;
  if (opencodeUrl !== undefined && !z.url().safeParse(opencodeUrl).success) {
    throw new ConfigError(`--opencode-url "${opencodeUrl}" is not a URL; expected e.g. http://127.0.0.1:4096`);
  }
  const password = env.OPENCODE_SERVER_PASSWORD;
  return {
    kind: "run",
    settings: {
      opencodeUrl: opencodeUrl?.replace(/\/+$/, ""),
      directory: resolve(cwd, parsed.directory ?? file.opencode.directory ?? "."),
      concurrency,
      parentPrompt: file.notifications.parentPrompt,
      claudeChannel: parsed["claude-channel"] ?? file.notifications.claudeChannel,
      transport,
      http,
      dataDir: resolve(cwd, parsed["data-dir"] ?? env.BACKGROUND_AGENTS_DATA_DIR ?? file.dataDir ?? defaultDataDir()),
      retention: file.retention,
      resumeInterrupted: file.recovery.resumeInterrupted,
      policy: policyFrom(file),
      opencodeAuth: password ? { username: env.OPENCODE_SERVER_USERNAME || "opencode", password } : undefined,
    },
  };
}

function parseConcurrency(spec: string): [string, number] {
  const match = /^([^=\s]+)=(\d+)$/.exec(spec);
  const limit = match ? Number(match[2]) : NaN;
  if (!match || !Limit.safeParse(limit).success) {
    throw new ConfigError(`--concurrency "${spec}" must be <agent>=<n> with n from 1 to 1000 (default=<n> sets the default)`);
  }
  return [match[1]!, limit];
}

export function loadConfigFile(path: string): ConfigFile {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new ConfigError(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  const result = ConfigFile.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const at = issue.path.length ? issue.path.join(".") : "(top level)";
      return `  ${at}: ${issue.message}`;
    });
    throw new ConfigError(`invalid config file ${path}:\n${problems.join("\n")}\nallowed keys: ${allowedKeys()}`);
  }
  return result.data;
}
