// Drives one MCP server process over stdio with the SDK client, as an MCP client would, and timestamps
// what arrives. Both servers (ours and the seed baseline) are driven through this same code.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { LoggingMessageNotificationSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { readFileSync } from "node:fs";
import { nowMs } from "../dev/model-server.js";

const TERMINAL_EVENTS = new Set(["task.completed", "task.error", "task.cancelled"]);

export interface Terminal {
  event: string;
  /** The task's opencode session, as the notification names it. */
  sessionId: string | null;
  /** Arrival at this client, nowMs() clock. */
  at: number;
}

export interface LaunchArgs {
  description: string;
  prompt: string;
  agent: string;
  parent_session_id?: string;
}

export interface Launched {
  taskId: string;
  status: string;
  /** Round trip of the background_task call at the client, ms. */
  rttMs: number;
  startedAt: number;
}

export interface ProcessMemory {
  rssMb: number;
  peakRssMb: number;
}

export class McpDriver {
  readonly terminals = new Map<string, Terminal>();
  /** Wall time from spawn to the first successful tools/list, ms. */
  readyMs = NaN;
  stderr = "";
  readonly #client: Client;
  readonly #transport: StdioClientTransport;
  readonly #waiters = new Map<string, Array<(t: Terminal) => void>>();

  private constructor(client: Client, transport: StdioClientTransport) {
    this.#client = client;
    this.#transport = transport;
    transport.stderr?.on("data", (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-50_000);
    });
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      const at = nowMs(); // first thing: the arrival time is the measurement
      const data = n.params.data as { event?: string; task_id?: string; session_id?: string | null } | undefined;
      if (data?.event && data.task_id && TERMINAL_EVENTS.has(data.event)) {
        this.#arrived(data.task_id, { event: data.event, sessionId: data.session_id ?? null, at });
      }
    });
  }

  /** Spawns `node <script> ...args` and connects; resolves once tools/list has answered. */
  static async spawn(label: string, script: string, args: string[], env: Record<string, string> = {}): Promise<McpDriver> {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [script, ...args],
      env: { ...(process.env as Record<string, string>), ...env },
      stderr: "pipe",
    });
    const driver = new McpDriver(new Client({ name: `bench-${label}`, version: "1.0.0" }), transport);
    const started = nowMs();
    try {
      await driver.#client.connect(transport);
      await driver.#client.listTools();
    } catch (error) {
      throw new Error(`${label} server did not start: ${String(error)}\n--- its stderr ---\n${driver.stderr}`);
    }
    driver.readyMs = nowMs() - started;
    return driver;
  }

  get pid(): number {
    const pid = this.#transport.pid;
    if (pid === null) throw new Error("the server process is gone");
    return pid;
  }

  async listTools(): ReturnType<Client["listTools"]> {
    return this.#client.listTools();
  }

  async call(name: string, args: Record<string, unknown>, timeoutMs = 120_000): Promise<CallToolResult> {
    const result = (await this.#client.callTool({ name, arguments: args }, undefined, { timeout: timeoutMs })) as CallToolResult;
    if (result.isError) {
      const text = result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
      throw new Error(`${name} failed: ${text}\n--- server stderr ---\n${this.stderr.slice(-5_000)}`);
    }
    return result;
  }

  async launch(args: LaunchArgs, timeoutMs?: number): Promise<Launched> {
    const startedAt = nowMs();
    const result = await this.call("background_task", { ...args }, timeoutMs);
    const rttMs = nowMs() - startedAt;
    const out = result.structuredContent as { task_id: string; status: string };
    return { taskId: out.task_id, status: out.status, rttMs, startedAt };
  }

  /** Resolves with the terminal notification of `taskId` (at once if it already came). */
  terminal(taskId: string, timeoutMs = 60_000): Promise<Terminal> {
    const known = this.terminals.get(taskId);
    if (known) return Promise.resolve(known);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no terminal notification for ${taskId} within ${timeoutMs} ms`)), timeoutMs);
      const list = this.#waiters.get(taskId) ?? [];
      list.push((t) => {
        clearTimeout(timer);
        resolve(t);
      });
      this.#waiters.set(taskId, list);
    });
  }

  #arrived(taskId: string, terminal: Terminal): void {
    if (this.terminals.has(taskId)) return;
    this.terminals.set(taskId, terminal);
    for (const resolve of this.#waiters.get(taskId) ?? []) resolve(terminal);
    this.#waiters.delete(taskId);
  }

  /** Resident and peak resident memory of the server process (Linux /proc). */
  memory(): ProcessMemory {
    const status = readFileSync(`/proc/${this.pid}/status`, "utf8");
    const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
    return { rssMb: kb("VmRSS") / 1024, peakRssMb: kb("VmHWM") / 1024 };
  }

  /** CPU time (user + system) the server process has used so far, ms (Linux /proc). */
  cpuMs(): number {
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of those.
    const stat = readFileSync(`/proc/${this.pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  }

  /** Closes stdin (both servers exit on it) and waits for the process to be gone. */
  async close(): Promise<void> {
    const pid = this.#transport.pid;
    await this.#client.close();
    if (pid === null) return;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && isAlive(pid)) await new Promise((r) => setTimeout(r, 20));
  }
}

/** USER_HZ: 100 on every Linux this runs on (the kernel ABI fixes it for /proc). */
const CLOCK_TICKS = 100;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
