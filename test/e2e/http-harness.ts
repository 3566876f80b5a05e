import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  LoggingMessageNotificationSchema,
  ResourceListChangedNotificationSchema,
  ResourceUpdatedNotificationSchema,
  type CallToolResult,
} from "@modelcontextprotocol/sdk/types.js";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI, text, type LogEvent } from "./harness.js";

/** The built CLI serving MCP over HTTP in a child process (`--transport http --port 0`). */
export class HttpServerProcess {
  stderr = "";

  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
    readonly dataDir: string,
  ) {}

  /** Starts the CLI with `args` and waits for its "serving" line; a fresh temp `--data-dir` unless `args` has one. */
  static async start(args: string[], env: Record<string, string> = {}): Promise<HttpServerProcess> {
    const dataDir = args.includes("--data-dir") ? args[args.indexOf("--data-dir") + 1]! : mkdtempSync(join(tmpdir(), "bg-http-data-"));
    const extra = args.includes("--data-dir") ? [] : ["--data-dir", dataDir];
    const child = spawn(process.execPath, [CLI, "--transport", "http", "--port", "0", ...extra, ...args], {
      env: { ...(process.env as Record<string, string>), BACKGROUND_AGENTS_LOG_LEVEL: "info", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    const url = await new Promise<string>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        stderr += chunk.toString();
        const match = /"message":"serving MCP over Streamable HTTP","url":"([^"]+)"/.exec(stderr);
        if (match) resolve(match[1]!);
      };
      child.stderr!.on("data", onData);
      child.once("exit", (code) => reject(new Error(`the server exited (${code}) before listening:\n${stderr}`)));
      setTimeout(() => reject(new Error(`the server did not listen within 30 s:\n${stderr}`)), 30_000).unref();
    });
    const server = new HttpServerProcess(child, url, dataDir);
    server.stderr = stderr;
    child.stderr!.on("data", (chunk: Buffer) => {
      server.stderr = (server.stderr + chunk.toString()).slice(-50_000);
    });
    return server;
  }

  get origin(): string {
    return new URL(this.url).origin;
  }

  /** Sends `signal` and resolves with the exit code (null if killed by a signal). */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    // "close" comes after the output is drained, so `stderr` is complete.
    const exited = new Promise<number | null>((resolve) => this.child.once("close", (code) => resolve(code)));
    this.child.kill(signal);
    return exited;
  }
}

/** An MCP client over Streamable HTTP (the SDK's client transport), recording the notifications it gets. */
export class HttpMcpClient {
  readonly logs: LogEvent[] = [];
  readonly updated: string[] = [];
  listChanged = 0;
  readonly errors: Error[] = [];

  private constructor(
    readonly client: Client,
    readonly transport: StreamableHTTPClientTransport,
  ) {}

  static async connect(url: string, token?: string): Promise<HttpMcpClient> {
    const transport = new StreamableHTTPClientTransport(new URL(url), {
      requestInit: token ? { headers: { Authorization: `Bearer ${token}` } } : undefined,
    });
    const client = new Client({ name: "e2e-http", version: "1.0.0" });
    const harness = new HttpMcpClient(client, transport);
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      harness.logs.push(n.params as LogEvent);
    });
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
      harness.updated.push(n.params.uri);
    });
    client.setNotificationHandler(ResourceListChangedNotificationSchema, () => {
      harness.listChanged++;
    });
    client.onerror = (error) => harness.errors.push(error);
    await client.connect(transport);
    return harness;
  }

  get sessionId(): string {
    return this.transport.sessionId!;
  }

  logsFor(taskId: string): string[] {
    return this.logs.filter((l) => l.data.task_id === taskId).map((l) => l.data.event);
  }

  async call(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
    return (await this.client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as CallToolResult;
  }

  async ok<T = Record<string, unknown>>(name: string, args: Record<string, unknown>): Promise<T> {
    const result = await this.call(name, args);
    if (result.isError) throw new Error(`${name} failed: ${text(result)}`);
    return result.structuredContent as T;
  }

  /** Ends the session (DELETE) and closes the transport. */
  async end(): Promise<void> {
    await this.transport.terminateSession().catch(() => undefined);
    await this.client.close();
  }
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A request through node:http, which (unlike fetch) sends the Host header it is given. */
export function rawRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? "GET", headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

export const INIT_BODY = JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "raw", version: "1.0.0" } },
});

export const MCP_HEADERS = { "Content-Type": "application/json", Accept: "application/json, text/event-stream" };
