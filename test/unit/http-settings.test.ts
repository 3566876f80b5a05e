import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, parseCli } from "../../src/config.js";
import { BearerTokens, NoAuth } from "../../src/transport/auth.js";
import { LoopbackHostGuard } from "../../src/transport/host-guard.js";
import { HttpSettingsError, isLoopbackHost, resolveHttpSettings, type HttpSettingsInput } from "../../src/transport/http-settings.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "http-settings-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TOKEN = "t0ken-0123456789abcdef";
const resolveWith = (input: Partial<HttpSettingsInput>) => resolveHttpSettings({ flags: {}, env: {}, file: {}, cwd: dir, ...input });

function settingsError(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(HttpSettingsError);
    return (error as Error).message;
  }
  throw new Error("expected an HttpSettingsError");
}

describe("resolveHttpSettings", () => {
  it("defaults to 127.0.0.1:3100 without tokens", () => {
    expect(resolveWith({})).toEqual({ host: "127.0.0.1", port: 3100, tokens: {} });
  });

  it("takes flags over the file, and the --token / env token as owner default", () => {
    const file = { http: { host: "localhost", port: 4000 }, auth: { tokens: { alice: "alice-0123456789abcdef" } } };
    expect(resolveWith({ file, flags: { port: "0", token: TOKEN } })).toEqual({
      host: "localhost",
      port: 0,
      tokens: { alice: "alice-0123456789abcdef", default: TOKEN },
    });
    expect(resolveWith({ env: { BACKGROUND_AGENTS_TOKEN: TOKEN } }).tokens).toEqual({ default: TOKEN });
  });

  it("reads tokens from a tokens file, relative to the working directory", () => {
    writeFileSync(path.join(dir, "tokens.json"), JSON.stringify({ alice: "alice-0123456789abcdef", bob: "bob-0123456789abcdef00" }));
    expect(resolveWith({ file: { auth: { tokensFile: "tokens.json" } } }).tokens).toEqual({
      alice: "alice-0123456789abcdef",
      bob: "bob-0123456789abcdef00",
    });
    writeFileSync(path.join(dir, "bad-tokens.json"), JSON.stringify({ alice: "short" }));
    expect(settingsError(() => resolveWith({ file: { auth: { tokensFile: "bad-tokens.json" } } }))).toMatch(/alice: a token must have at least 16 characters/);
    expect(settingsError(() => resolveWith({ file: { auth: { tokensFile: "missing.json" } } }))).toMatch(/cannot read auth.tokensFile/);
  });

  it("refuses bad ports, weak or shared tokens, naming what is allowed", () => {
    expect(settingsError(() => resolveWith({ flags: { port: "70000" } }))).toMatch(/--port "70000" must be a number from 0 to 65535/);
    expect(settingsError(() => resolveWith({ flags: { port: "http" } }))).toMatch(/--port "http"/);
    expect(settingsError(() => resolveWith({ flags: { token: "short" } }))).toMatch(/--token is not a usable token: a token must have at least 16/);
    expect(settingsError(() => resolveWith({ env: { BACKGROUND_AGENTS_TOKEN: "has a space in it ok" } }))).toMatch(/BACKGROUND_AGENTS_TOKEN.*printable ASCII without spaces/);
    const shared = { auth: { tokens: { alice: TOKEN, bob: TOKEN } } };
    expect(settingsError(() => resolveWith({ file: shared }))).toMatch(/owners "alice" and "bob" have the same token/);
  });

  it("refuses a non-loopback address without a token, and allows it with one", () => {
    expect(settingsError(() => resolveWith({ flags: { host: "0.0.0.0" } }))).toMatch(/--host 0.0.0.0 is not a loopback address, and no token is configured/);
    expect(resolveWith({ flags: { host: "0.0.0.0", token: TOKEN } }).host).toBe("0.0.0.0");
  });

  it("knows loopback addresses", () => {
    for (const host of ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "::ffff:127.0.0.1"]) expect(isLoopbackHost(host), host).toBe(true);
    for (const host of ["0.0.0.0", "::", "192.168.1.10", "example.com", "128.0.0.1"]) expect(isLoopbackHost(host), host).toBe(false);
  });
});

describe("parseCli for HTTP", () => {
  const run = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
    const action = parseCli(argv, env, dir);
    if (action.kind !== "run") throw new Error("expected run");
    return action.settings;
  };

  it("selects the HTTP transport with its settings; stdio has none", () => {
    expect(run(["--transport", "http", "--port", "8080"])).toMatchObject({ transport: "http", http: { host: "127.0.0.1", port: 8080, tokens: {} } });
    expect(run([]).http).toBeUndefined();
  });

  it("refuses HTTP flags without --transport http, and turns HTTP problems into ConfigErrors", () => {
    expect(() => parseCli(["--port", "8080"], {}, dir)).toThrow(new ConfigError("--port applies to --transport http only"));
    expect(() => parseCli(["--transport", "http", "--host", "0.0.0.0"], {}, dir)).toThrow(ConfigError);
  });

  it("accepts http and auth in the config file and refuses tokens given both ways", () => {
    const file = path.join(dir, "config.json");
    writeFileSync(file, JSON.stringify({ transport: "http", http: { port: 3200 }, auth: { tokens: { team: TOKEN } } }));
    expect(run(["--config", file]).http).toEqual({ host: "127.0.0.1", port: 3200, tokens: { team: TOKEN } });
    writeFileSync(file, JSON.stringify({ auth: { tokens: { team: TOKEN }, tokensFile: "x.json" } }));
    expect(() => parseCli(["--config", file], {}, dir)).toThrow(/give auth.tokens or auth.tokensFile, not both/);
    writeFileSync(file, JSON.stringify({ auth: { tokens: { "bad owner": TOKEN } } }));
    expect(() => parseCli(["--config", file], {}, dir)).toThrow(/owner name is 1-64 letters/);
  });
});

describe("BearerTokens", () => {
  const auth = new BearerTokens({ alice: "alice-0123456789abcdef", bob: "bob-0123456789abcdef00" });

  it("names the owner of a valid token", () => {
    expect(auth.authenticate("Bearer alice-0123456789abcdef")).toEqual({ ok: true, owner: "alice" });
    expect(auth.authenticate("bearer bob-0123456789abcdef00")).toEqual({ ok: true, owner: "bob" });
  });

  it("refuses a missing, malformed or unknown token, saying which", () => {
    expect(auth.authenticate(undefined)).toMatchObject({ ok: false, error: "missing" });
    expect(auth.authenticate("Basic abc")).toMatchObject({ ok: false, error: "invalid_request" });
    expect(auth.authenticate("Bearer alice-0123456789abcdeX")).toMatchObject({ ok: false, error: "invalid_token" });
    expect(auth.authenticate("Bearer alice")).toMatchObject({ ok: false, error: "invalid_token" });
  });

  it("without tokens, everyone is the one owner", () => {
    expect(new NoAuth("local").authenticate()).toEqual({ ok: true, owner: "local" });
  });
});

describe("LoopbackHostGuard", () => {
  const guard = new LoopbackHostGuard("127.0.0.1");

  it("accepts local names with any port, and local origins", () => {
    for (const host of ["localhost:3100", "127.0.0.1:3100", "[::1]:3100", "localhost"]) expect(guard.check({ host }), host).toBeUndefined();
    expect(guard.check({ host: "localhost:3100", origin: "http://localhost:5173" })).toBeUndefined();
  });

  it("refuses foreign or missing Host and foreign Origin", () => {
    expect(guard.check({ host: "evil.example" })).toMatch(/Invalid Host: evil.example/);
    expect(guard.check({ host: "localhost.evil.example:3100" })).toMatch(/Invalid Host/);
    expect(guard.check({})).toMatch(/Missing Host/);
    expect(guard.check({ host: "localhost:3100", origin: "http://evil.example" })).toMatch(/Invalid Origin/);
    expect(guard.check({ host: "localhost:3100", origin: "null" })).toMatch(/Invalid Origin/);
  });

  it("also accepts the loopback address it is bound to", () => {
    expect(new LoopbackHostGuard("127.0.0.2").check({ host: "127.0.0.2:3100" })).toBeUndefined();
    expect(new LoopbackHostGuard("::1").check({ host: "[::1]:3100" })).toBeUndefined();
  });
});
