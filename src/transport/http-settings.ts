import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { resolve } from "node:path";
import { z } from "zod";

/**
 * The HTTP transport's settings: where it listens and which bearer tokens it accepts. The zod schemas
 * are the config file's `http` and `auth` sections; `resolveHttpSettings` merges them with the flags
 * and the environment and refuses anything unsafe or malformed with a message naming it.
 */

export const DEFAULT_HTTP_HOST = "127.0.0.1";
export const DEFAULT_HTTP_PORT = 3100;
/** The owner of the token given by `--token` / BACKGROUND_AGENTS_TOKEN. */
export const DEFAULT_TOKEN_OWNER = "default";
export const TOKEN_ENV = "BACKGROUND_AGENTS_TOKEN";

const MIN_TOKEN_CHARS = 16;

export const Port = z
  .number()
  .int("port must be a whole number")
  .min(0, "port must be from 0 to 65535")
  .max(65_535, "port must be from 0 to 65535");

export const OwnerName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "an owner name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit");

export const Token = z
  .string()
  .min(MIN_TOKEN_CHARS, `a token must have at least ${MIN_TOKEN_CHARS} characters (e.g. \`openssl rand -hex 32\`)`)
  .regex(/^[\x21-\x7e]+$/, "a token is printable ASCII without spaces");

/** owner name -> token. Owner names are checked here rather than as the record's key schema, whose error names no rule. */
export const TokenMap = z.record(z.string(), Token).superRefine((tokens, ctx) => {
  for (const owner of Object.keys(tokens)) {
    const checked = OwnerName.safeParse(owner);
    if (!checked.success) ctx.addIssue({ code: "custom", path: [owner], message: checked.error.issues[0]!.message });
  }
});

/** The config file's `http` section. */
export const HttpFileConfig = z.strictObject({
  host: z.string().min(1).default(DEFAULT_HTTP_HOST).describe("Address to listen on; other than loopback needs a token"),
  port: Port.default(DEFAULT_HTTP_PORT).describe("Port to listen on; 0 picks a free one"),
});
export type HttpFileConfig = z.infer<typeof HttpFileConfig>;

/** The config file's `auth` section: tokens inline, or the path of a JSON file holding the same map. */
export const AuthFileConfig = z
  .strictObject({
    tokens: TokenMap.optional().describe('Bearer tokens by owner name: {"<owner>": "<token>"}'),
    tokensFile: z.string().min(1).optional().describe("A JSON file holding the same owner -> token map (keeps secrets out of shared configs)"),
  })
  .refine((auth) => !(auth.tokens && auth.tokensFile), { message: "give auth.tokens or auth.tokensFile, not both" });
export type AuthFileConfig = z.infer<typeof AuthFileConfig>;

export interface HttpSettings {
  host: string;
  port: number;
  /** owner -> token. Empty: no authentication (allowed on loopback addresses only); every client is `noAuthOwner`. */
  tokens: Record<string, string>;
}

/** A problem with the HTTP settings; config.ts turns it into a ConfigError. */
export class HttpSettingsError extends Error {
  override name = "HttpSettingsError";
}

export interface HttpSettingsInput {
  flags: { host?: string; port?: string; token?: string };
  env: NodeJS.ProcessEnv;
  file: { http?: z.input<typeof HttpFileConfig>; auth?: AuthFileConfig };
  /** Relative paths (auth.tokensFile) resolve against this. */
  cwd: string;
}

export function resolveHttpSettings({ flags, env, file, cwd }: HttpSettingsInput): HttpSettings {
  const host = flags.host ?? file.http?.host ?? DEFAULT_HTTP_HOST;
  const port = flags.port === undefined ? (file.http?.port ?? DEFAULT_HTTP_PORT) : parsePort(flags.port);

  const tokens: Record<string, string> = { ...file.auth?.tokens };
  if (file.auth?.tokensFile) Object.assign(tokens, readTokensFile(resolve(cwd, file.auth.tokensFile)));
  const single = flags.token ?? env[TOKEN_ENV];
  if (single !== undefined) {
    const checked = Token.safeParse(single);
    if (!checked.success) {
      const from = flags.token !== undefined ? "--token" : TOKEN_ENV;
      throw new HttpSettingsError(`${from} is not a usable token: ${checked.error.issues[0]!.message}`);
    }
    tokens[DEFAULT_TOKEN_OWNER] = single;
  }
  checkUnique(tokens);

  if (!isLoopbackHost(host) && Object.keys(tokens).length === 0) {
    throw new HttpSettingsError(
      `--host ${host} is not a loopback address, and no token is configured: anyone who can reach it could run agents. ` +
        `Give a token (--token <token>, env ${TOKEN_ENV}, or "auth": {"tokens": {...}} / {"tokensFile": "..."} in the config file), ` +
        `or listen on a loopback address such as 127.0.0.1.`,
    );
  }
  return { host, port, tokens };
}

function parsePort(text: string): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!Port.safeParse(port).success) throw new HttpSettingsError(`--port "${text}" must be a number from 0 to 65535 (0 picks a free port)`);
  return port;
}

function readTokensFile(path: string): Record<string, string> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new HttpSettingsError(`cannot read auth.tokensFile ${path}: ${(error as Error).message}`);
  }
  const parsed = TokenMap.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `  ${issue.path.length ? issue.path.join(".") : "(top level)"}: ${issue.message}`);
    throw new HttpSettingsError(`invalid auth.tokensFile ${path}; expected {"<owner>": "<token>", ...}:\n${problems.join("\n")}`);
  }
  return parsed.data;
}

/** One token, one owner: a token shared by two owners would make its identity ambiguous. */
function checkUnique(tokens: Record<string, string>): void {
  const seen = new Map<string, string>();
  for (const [owner, token] of Object.entries(tokens)) {
    const other = seen.get(token);
    if (other !== undefined) throw new HttpSettingsError(`owners "${other}" and "${owner}" have the same token; every owner needs a token of its own`);
    seen.set(token, owner);
  }
}

/** localhost, 127.0.0.0/8 and ::1: addresses only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (bare === "localhost") return true;
  const version = isIP(bare);
  if (version === 4) return bare.startsWith("127.");
  if (version === 6) return bare === "::1" || bare === "0:0:0:0:0:0:0:1" || /^::ffff:127\./.test(bare);
  return false;
}
