import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
  type CallToolResult,
} from "@modelcontextprotocol/sdk/types.js";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ScriptedModel } from "../../dev/model-server.js";
import { startOpencodeSandbox, type OpencodeSandbox } from "../../dev/opencode-sandbox.js";

export const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));

export interface LogEvent {
  level: string;
  logger?: string;
  data: Record<string, unknown> & { event: string; task_id: string; status: string };
}

/** An MCP client over stdio, talking to the built CLI, recording the notifications it gets. */
export class McpHarness {
  readonly logs: LogEvent[] = [];
  readonly updated: string[] = [];
  stderr = "";

  private constructor(
    readonly client: Client,
    readonly transport: StdioClientTransport,
  ) {}

  /** Spawns the CLI with `args`; a fresh temp `--data-dir` unless `args` has one. */
  static async connect(args: string[], env: Record<string, string> = {}): Promise<McpHarness> {
    const dataDir = args.includes("--data-dir") ? [] : ["--data-dir", mkdtempSync(join(tmpdir(), "bg-data-"))];
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, ...dataDir, ...args],
      env: { ...(process.env as Record<string, string>), ...env },
      stderr: "pipe",
    });
    const client = new Client({ name: "e2e", version: "1.0.0" });
    const harness = new McpHarness(client, transport);
    transport.stderr?.on("data", (chunk: Buffer) => {
      harness.stderr = (harness.stderr + chunk.toString()).slice(-20_000);
    });
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      harness.logs.push(n.params as LogEvent);
    });
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
      harness.updated.push(n.params.uri);
    });
    await client.connect(transport);
    return harness;
  }

  async call(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
    return (await this.client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })) as CallToolResult;
  }

  /** Calls a tool and returns its structured result, failing loudly on an error result. */
  async ok<T = Record<string, unknown>>(name: string, args: Record<string, unknown>): Promise<T> {
    const result = await this.call(name, args);
    if (result.isError) throw new Error(`${name} failed: ${text(result)}\n--- server stderr ---\n${this.stderr}`);
    return result.structuredContent as T;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

export function text(result: CallToolResult): string {
  return result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
}

export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A scripted model and a real opencode server in a sandbox, shared by the tests of one file. */
export async function startBackend(): Promise<{ model: ScriptedModel; opencode: OpencodeSandbox; stop(): Promise<void> }> {
  const model = await ScriptedModel.start();
  const opencode = await startOpencodeSandbox({ modelUrl: model.url });
  return {
    model,
    opencode,
    async stop() {
      await opencode.stop();
      await model.close();
    },
  };
}

/** The pids of `pid`'s children (Linux /proc): the embedded opencode is a child of its sh guard. */
export function childPids(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return children;
}

/** Kills the opencode under an sh guard (not the guard), the way a crash would. */
export function killOpencodeUnder(guardPid: number): void {
  for (const child of childPids(guardPid)) {
    const cmdline = readFileSync(`/proc/${child}/cmdline`, "utf8");
    if (cmdline.includes("serve")) process.kill(child, "SIGKILL");
  }
}
