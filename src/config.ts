import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import type { ConcurrencyLimits } from "./tasks/agent-queues.js";
import { defaultDataDir } from "./tasks/data-dir.js";
import { DEFAULT_POLICY, type TaskPolicy } from "./tasks/policy.js";
import { AuthFileConfig, HttpFileConfig, HttpSettingsError, resolveHttpSettings, type HttpSettings } from "./transport/http-settings.js";

/** A configuration problem the user must fix; the message names what was wrong and what is allowed. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

const Limit = z.number().int().min(1).max(1_000);

/** The JSON config file (`--config`). Every level is strict: an unknown key is an error that names it. */
export const ConfigFile = z.strictObject({
  opencode: z
    .strictObject({
      url: z.url().optional().describe("Attach to this opencode server instead of spawning one"),
      directory: z.string().min(1).optional().describe("The project the sessions work in"),
    })
    .optional(),
  concurrency: z
    .strictObject({
      default: Limit.optional().describe("Sessions per agent at once, for agents not listed (default 5)"),
      agents: z.record(z.string().min(1), Limit).optional().describe("Per-agent limits"),
    })
    .optional(),
  notifications: z
    .strictObject({
      parentPrompt: z.boolean().optional().describe("Prompt the parent session when a task ends (default true)"),
      claudeChannel: z
        .boolean()
        .optional()
        .describe('Act as a Claude Code channel: declare experimental "claude/channel" and push a channel event when a task ends (default false)'),
    })
    .optional(),
  transport: z.enum(["stdio", "http"]).optional(),
  http: HttpFileConfig.optional().describe("Streamable HTTP transport: host, port"),
  auth: AuthFileConfig.optional().describe("Bearer tokens for the HTTP transport, by owner"),
  dataDir: z.string().min(1).optional().describe("Where task state is kept (default: the per-user data dir)"),
  retention: z
    .strictObject({
      maxAgeDays: z.number().positive().optional().describe("Finished tasks older than this are pruned (default 7)"),
      maxTasks: z.number().int().min(1).optional().describe("At most this many tasks are kept, oldest finished pruned first (default 10000)"),
    })
    .optional(),
  timeouts: z
    .strictObject({
      taskMs: z.number().int().min(0).optional().describe("Default task timeout in ms; 0 = none (default 1800000 = 30 min)"),
      stallMs: z.number().int().min(1_000).optional().describe("Check a task with no events for this long (default 300000 = 5 min)"),
    })
    .optional(),
  permissions: z
    .strictObject({
      onAsk: z.enum(["reject", "allow", "wait"]).optional().describe("Answer to a session's permission request (default reject)"),
    })
    .optional(),
  todos: z
    .strictObject({
      continuations: z.number().int().min(0).max(20).optional().describe("Continue prompts for incomplete todos (default 2)"),
    })
    .optional(),
  limits: z
    .strictObject({
      maxToolCalls: z.number().int().min(1).optional().describe("Tool calls per task before it is stopped (default 500)"),
      maxRepeatedToolCalls: z.number().int().min(2).optional().describe("Identical tool calls in a row before it is stopped (default 20)"),
      maxQueuedPerAgent: z.number().int().min(1).optional().describe("Tasks waiting per agent (default 1000)"),
      maxResultChars: z.number().int().min(1_000).optional().describe("Longest stored result (default 100000)"),
      maxDepth: z.number().int().min(1).max(10).optional().describe("How deep background tasks may launch tasks (default 3)"),
    })
    .optional(),
  recovery: z
    .strictObject({
      resumeInterrupted: z
        .boolean()
        .optional()
        .describe("After a restart, continue sessions our embedded opencode was running instead of ending them (default false)"),
    })
    .optional(),
});
export type ConfigFile = z.infer<typeof ConfigFile>;

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
  retention: { maxAgeDays: number; maxTasks: number };
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
  --concurrency <agent=n>  sessions of one agent at once (repeatable); default=n sets the default (5)
  --transport stdio|http   MCP transport (default stdio); http serves Streamable HTTP at /mcp
  --host <address>         HTTP: address to listen on (default 127.0.0.1); other than loopback needs a token
  --port <n>               HTTP: port to listen on (default 3100; 0 picks a free one)
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

export type CliAction = { kind: "help" } | { kind: "version" } | { kind: "run"; settings: Settings };

export function parseCli(argv: string[], env: NodeJS.ProcessEnv, cwd: string): CliAction {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
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
      },
    }).values;
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}\n\n${USAGE}`);
  }
  if (parsed.help) return { kind: "help" };
  if (parsed.version) return { kind: "version" };

  const configPath = parsed.config ?? env.BACKGROUND_AGENTS_CONFIG;
  const file = configPath ? loadConfigFile(resolve(cwd, configPath)) : {};

  const transport = parsed.transport ?? file.transport ?? "stdio";
  if (transport !== "stdio" && transport !== "http") throw new ConfigError(`--transport "${transport}" is not supported; allowed: stdio, http`);
  const httpOnly = (["host", "port", "token"] as const).filter((flag) => parsed[flag] !== undefined);
  if (transport !== "http" && httpOnly.length) throw new ConfigError(`--${httpOnly[0]} applies to --transport http only`);
  let http: HttpSettings | undefined;
  try {
    if (transport === "http") http = resolveHttpSettings({ flags: { host: parsed.host, port: parsed.port, token: parsed.token }, env, file, cwd });
  } catch (error) {
    throw error instanceof HttpSettingsError ? new ConfigError(error.message) : error;
  }

  const concurrency: ConcurrencyLimits = {
    default: file.concurrency?.default ?? 5,
    agents: { ...file.concurrency?.agents },
  };
  for (const spec of parsed.concurrency ?? []) {
    const [agent, limit] = parseConcurrency(spec);
    if (agent === "default") concurrency.default = limit;
    else concurrency.agents[agent] = limit;
  }

  const opencodeUrl = parsed["opencode-url"] ?? env.OPENCODE_URL ?? file.opencode?.url;
  if (opencodeUrl !== undefined && !z.url().safeParse(opencodeUrl).success) {
    throw new ConfigError(`--opencode-url "${opencodeUrl}" is not a URL; expected e.g. http://127.0.0.1:4096`);
  }
  const password = env.OPENCODE_SERVER_PASSWORD;
  return {
    kind: "run",
    settings: {
      opencodeUrl: opencodeUrl?.replace(/\/+$/, ""),
      directory: resolve(cwd, parsed.directory ?? file.opencode?.directory ?? "."),
      concurrency,
      parentPrompt: file.notifications?.parentPrompt ?? true,
      claudeChannel: parsed["claude-channel"] ?? file.notifications?.claudeChannel ?? false,
      transport,
      http,
      dataDir: resolve(cwd, parsed["data-dir"] ?? env.BACKGROUND_AGENTS_DATA_DIR ?? file.dataDir ?? defaultDataDir()),
      retention: { maxAgeDays: file.retention?.maxAgeDays ?? 7, maxTasks: file.retention?.maxTasks ?? 10_000 },
      resumeInterrupted: file.recovery?.resumeInterrupted ?? false,
      policy: {
        taskTimeoutMs: file.timeouts?.taskMs ?? DEFAULT_POLICY.taskTimeoutMs,
        stallMs: file.timeouts?.stallMs ?? DEFAULT_POLICY.stallMs,
        onPermission: file.permissions?.onAsk ?? DEFAULT_POLICY.onPermission,
        todoContinuations: file.todos?.continuations ?? DEFAULT_POLICY.todoContinuations,
        maxToolCalls: file.limits?.maxToolCalls ?? DEFAULT_POLICY.maxToolCalls,
        maxRepeatedToolCalls: file.limits?.maxRepeatedToolCalls ?? DEFAULT_POLICY.maxRepeatedToolCalls,
        maxQueuedPerAgent: file.limits?.maxQueuedPerAgent ?? DEFAULT_POLICY.maxQueuedPerAgent,
        maxResultChars: file.limits?.maxResultChars ?? DEFAULT_POLICY.maxResultChars,
        maxDepth: file.limits?.maxDepth ?? DEFAULT_POLICY.maxDepth,
      },
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
    throw new ConfigError(
      `invalid config file ${path}:\n${problems.join("\n")}\n` +
        `allowed keys: opencode.{url,directory}, concurrency.{default,agents}, notifications.{parentPrompt,claudeChannel}, transport, http.{host,port}, auth.{tokens,tokensFile}, dataDir, retention.{maxAgeDays,maxTasks}, recovery.resumeInterrupted, ` +
        `timeouts.{taskMs,stallMs}, permissions.onAsk, todos.continuations, limits.{maxToolCalls,maxRepeatedToolCalls,maxQueuedPerAgent,maxResultChars,maxDepth}`,
    );
  }
  return result.data;
}
