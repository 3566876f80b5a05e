import { execFile } from "node:child_process";
import http from "node:http";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../src/opencode/embedded.js";
import { CLI } from "./harness.js";
import { HttpMcpClient, HttpServerProcess, INIT_BODY, MCP_HEADERS, rawRequest, type RawResponse } from "./http-harness.js";

// No opencode is needed to test the HTTP layer: the server starts and serves against an unreachable one.
const TOKEN = "test-token-0123456789abcdef";
let opencodeUrl: string;
let server: HttpServerProcess;

beforeAll(async () => {
  opencodeUrl = `http://127.0.0.1:${await freePort()}`;
  server = await HttpServerProcess.start(["--opencode-url", opencodeUrl, "--directory", tmpdir()], { BACKGROUND_AGENTS_TOKEN: TOKEN });
});

afterAll(async () => {
  await server?.stop();
});

const auth = { Authorization: `Bearer ${TOKEN}` };

describe("HTTP transport security", () => {
  it("answers 401 with a Bearer challenge without a token or with a wrong one", async () => {
    const missing = await rawRequest(server.url, { method: "POST", headers: MCP_HEADERS, body: INIT_BODY });
    expect(missing.status).toBe(401);
    expect(missing.headers["www-authenticate"]).toBe('Bearer realm="background-agents-mcp"');
    expect(JSON.parse(missing.body)).toMatchObject({ error: "unauthorized", error_description: expect.stringMatching(/Authorization: Bearer/) });

    const wrong = await rawRequest(server.url, { method: "POST", headers: { ...MCP_HEADERS, Authorization: "Bearer not-the-token-0123456789" }, body: INIT_BODY });
    expect(wrong.status).toBe(401);
    expect(wrong.headers["www-authenticate"]).toMatch(/^Bearer realm="background-agents-mcp", error="invalid_token"/);

    const basic = await rawRequest(server.url, { method: "POST", headers: { ...MCP_HEADERS, Authorization: "Basic dXNlcjpwYXNz" }, body: INIT_BODY });
    expect(basic.status).toBe(401);
    expect(basic.headers["www-authenticate"]).toMatch(/error="invalid_request"/);

    // The SDK client gets the 401 as an error carrying the reason.
    await expect(HttpMcpClient.connect(server.url)).rejects.toMatchObject({ code: 401, message: expect.stringMatching(/Missing bearer token/) });
    await expect(HttpMcpClient.connect(server.url, "not-the-token-0123456789")).rejects.toMatchObject({ code: 401 });
  });

  it("refuses a foreign Host or Origin with 403 (DNS rebinding), and accepts local ones", async () => {
    const evilHost = await rawRequest(server.url, { method: "POST", headers: { ...MCP_HEADERS, ...auth, Host: "evil.example" }, body: INIT_BODY });
    expect(evilHost.status).toBe(403);
    expect(evilHost.body).toMatch(/Invalid Host: evil.example/);
    const evilHealth = await rawRequest(`${server.origin}/healthz`, { headers: { Host: "evil.example:3100" } });
    expect(evilHealth.status).toBe(403);
    const evilOrigin = await rawRequest(server.url, {
      method: "POST",
      headers: { ...MCP_HEADERS, ...auth, Origin: "http://evil.example" },
      body: INIT_BODY,
    });
    expect(evilOrigin.status).toBe(403);
    expect(evilOrigin.body).toMatch(/Invalid Origin/);
    const port = new URL(server.url).port;
    const local = await rawRequest(server.url, {
      method: "POST",
      headers: { ...MCP_HEADERS, ...auth, Host: `localhost:${port}`, Origin: `http://localhost:${port}` },
      body: INIT_BODY,
    });
    expect(local.status).toBe(200);
  });

  it("answers /healthz without auth and says nothing about tasks", async () => {
    const health = await rawRequest(`${server.origin}/healthz`);
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toEqual({ status: "ok" });
    expect((await rawRequest(`${server.origin}/elsewhere`, { headers: auth })).status).toBe(404);
  });

  it("rejects an oversized body with 413, a non-JSON body with 415 and invalid JSON with 400", async () => {
    // Refused on its declared length, before the body is read (so only a little of it is sent here).
    const tooLarge = await new Promise<RawResponse>((resolve, reject) => {
      const req = http.request(server.url, { method: "POST", headers: { ...MCP_HEADERS, ...auth, "Content-Length": String(5 * 1024 * 1024) } }, (res) => {
        let body = "";
        res.on("data", (chunk: Buffer) => (body += chunk.toString()));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      });
      req.on("error", reject);
      req.write("a".repeat(1024));
    });
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.headers.connection).toBe("close");
    expect(tooLarge.body).toMatch(/exceeds 4194304 bytes/);
    const text = await rawRequest(server.url, { method: "POST", headers: { ...MCP_HEADERS, ...auth, "Content-Type": "text/plain" }, body: INIT_BODY });
    expect(text.status).toBe(415);
    const broken = await rawRequest(server.url, { method: "POST", headers: { ...MCP_HEADERS, ...auth }, body: "{not json" });
    expect(broken.status).toBe(400);
    expect(JSON.parse(broken.body)).toMatchObject({ error: { code: -32700 } });
  });

  it("answers 404 for an unknown session, 400 without one, and 404 once a session is deleted", async () => {
    const ping = JSON.stringify({ jsonrpc: "2.0", id: 2, method: "ping" });
    const unknown = await rawRequest(server.url, { method: "POST", headers: { ...MCP_HEADERS, ...auth, "mcp-session-id": "no-such-session" }, body: ping });
    expect(unknown.status).toBe(404);
    const none = await rawRequest(server.url, { method: "POST", headers: { ...MCP_HEADERS, ...auth }, body: ping });
    expect(none.status).toBe(400);
    expect(none.body).toMatch(/Mcp-Session-Id header is required/);

    const client = await HttpMcpClient.connect(server.url, TOKEN);
    const id = client.sessionId;
    await client.client.ping();
    await client.end();
    const after = await rawRequest(server.url, {
      method: "POST",
      headers: { ...MCP_HEADERS, ...auth, "mcp-session-id": id, "mcp-protocol-version": "2025-11-25" },
      body: ping,
    });
    expect(after.status).toBe(404);
  });

  it("lists the tools over HTTP with the env token (owner default)", async () => {
    const client = await HttpMcpClient.connect(server.url, TOKEN);
    const { tools } = await client.client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(["background_cancel", "background_output", "background_task"]);
    expect(await client.ok("background_output", {})).toEqual({ tasks: [], next_cursor: null });
    await client.end();
  });

  it("refuses to listen on a non-loopback address without a token, naming the fix", async () => {
    const run = promisify(execFile);
    const env = { ...process.env };
    delete env.BACKGROUND_AGENTS_TOKEN;
    const failure = await run(process.execPath, [CLI, "--transport", "http", "--host", "0.0.0.0", "--opencode-url", opencodeUrl], { env }).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stderr).toMatch(/--host 0\.0\.0\.0 is not a loopback address, and no token is configured/);
    expect(failure?.stderr).toMatch(/--token/);
  });

  it("refuses a port in use with a clear message", async () => {
    const port = new URL(server.url).port;
    const dataDir = mkdtempSync(join(tmpdir(), "bg-http-port-"));
    const failure = await promisify(execFile)(
      process.execPath,
      [CLI, "--transport", "http", "--port", port, "--opencode-url", opencodeUrl, "--data-dir", dataDir],
      { env: { ...process.env, BACKGROUND_AGENTS_TOKEN: TOKEN } },
    ).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failure?.code).toBe(1);
    expect(failure?.stderr).toMatch(new RegExp(`cannot listen on 127.0.0.1:${port}: the address is already in use`));
  });

  it("reads several owners' tokens from a tokens file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bg-http-tokens-"));
    writeFileSync(join(dir, "tokens.json"), JSON.stringify({ alice: "alice-token-0123456789", bob: "bob-token-0123456789ab" }));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ transport: "http", auth: { tokensFile: join(dir, "tokens.json") } }));
    const other = await HttpServerProcess.start(["--config", join(dir, "config.json"), "--opencode-url", opencodeUrl, "--directory", tmpdir()]);
    try {
      const alice = await HttpMcpClient.connect(other.url, "alice-token-0123456789");
      await alice.client.ping();
      await alice.end();
      await expect(HttpMcpClient.connect(other.url, TOKEN)).rejects.toMatchObject({ code: 401, message: expect.stringMatching(/invalid_token/) });
    } finally {
      await other.stop();
    }
  });

  it("shuts down gracefully on SIGTERM with sessions and streams open", async () => {
    const other = await HttpServerProcess.start(["--opencode-url", opencodeUrl, "--directory", tmpdir()]);
    const client = await HttpMcpClient.connect(other.url);
    await client.client.ping();
    const started = Date.now();
    expect(await other.stop("SIGTERM")).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(other.stderr).toMatch(/"message":"MCP session ended"/);
    expect(other.stderr).toMatch(/"message":"HTTP transport stopped"/);
    await client.client.close();
  });
});
