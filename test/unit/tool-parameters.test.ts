// A parameter a tool does not take (a typo, or a feature this version lacks) is refused, naming it and the
// allowed ones, and nothing happens: it is never silently dropped while the call goes ahead.
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { CallToolResultSchema, CreateTaskResultSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TaskManager } from "../../src/tasks/manager.js";
import { startSimulatedEngine, type McpPair, type SimulatedEngine } from "../support/mcp-wire.js";
import { SimulatedOpencode } from "../support/simulated-opencode.js";
import { captureLogs } from "../support/task-world.js";

const TASK_ALLOWED = "allowed: description, prompt, agent, model, parent_session_id, timeout_ms";
const LAUNCH = { description: "Map the tree", prompt: "Say hi.", agent: "explore" };

let sim: SimulatedOpencode;
let engine: SimulatedEngine;
let manager: TaskManager;
let mcp: McpPair;
let client: Client;
let restoreLogs: () => void;

beforeAll(async () => {
  restoreLogs = captureLogs();
  sim = new SimulatedOpencode({ agents: ["explore"] });
  engine = await startSimulatedEngine(sim, { default: 2, agents: {} });
  manager = engine.manager;
  mcp = await engine.connect();
  client = mcp.client;
});

afterAll(async () => {
  await mcp.close();
  engine.stop();
  restoreLogs();
});

async function call(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args })) as CallToolResult;
}

const textOf = (result: CallToolResult): string => result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");

/** Nothing was launched: no task, no opencode session, no prompt. */
async function nothingLaunched(): Promise<void> {
  await sim.settle();
  expect(manager.list()).toEqual([]);
  expect(sim.createdTitles).toEqual([]);
  expect(sim.prompts).toEqual([]);
}

describe("parameters a tool does not take", () => {
  it("are ruled out by every tool's published input schema", async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => [t.name, t.inputSchema.additionalProperties])).toEqual([
      ["background_task", false],
      ["background_output", false],
      ["background_cancel", false],
    ]);
  });

  it("background_task refuses them, naming them and the allowed ones, and launches nothing", async () => {
    const one = await call("background_task", { ...LAUNCH, isolation: "worktree" });
    expect(one.isError).toBe(true);
    expect(textOf(one)).toBe(`background_task does not take "isolation"; ${TASK_ALLOWED}`);
    const two = await call("background_task", { ...LAUNCH, agnet: "explore", timeout: 5 });
    expect(textOf(two)).toBe(`background_task does not take "agnet", "timeout"; ${TASK_ALLOWED}`);
    await nothingLaunched();
  });

  it("a task-augmented background_task call gets a failed MCP task that says why, and nothing is launched", async () => {
    const created = await client.request(
      { method: "tools/call", params: { name: "background_task", arguments: { ...LAUNCH, isolation: "worktree" } } },
      CreateTaskResultSchema,
      { task: { ttl: 60_000 } },
    );
    const refusal = `background_task does not take "isolation"; ${TASK_ALLOWED}`;
    expect(created.task).toMatchObject({ status: "failed", statusMessage: refusal });
    const result = await client.experimental.tasks.getTaskResult(created.task.taskId, CallToolResultSchema);
    expect(result).toMatchObject({ isError: true, content: [{ type: "text", text: refusal }] });
    await nothingLaunched();
  });

  it("background_output and background_cancel refuse them too", async () => {
    const output = await call("background_output", { task_id: "bg_000000000000", ful: true });
    expect(output.isError).toBe(true);
    expect(textOf(output)).toBe('background_output does not take "ful"; allowed: task_id, block, timeout_ms, full, limit, cursor');
    const cancel = await call("background_cancel", { all: true, force: true });
    expect(cancel.isError).toBe(true);
    expect(textOf(cancel)).toBe('background_cancel does not take "force"; allowed: task_id, all');
  });

  it("every allowed parameter is still taken", async () => {
    const launched = await call("background_task", { ...LAUNCH, model: "sim/sim-1", timeout_ms: 60_000 });
    expect(launched.isError, textOf(launched)).toBeFalsy();
    const id = (launched.structuredContent as { task_id: string }).task_id;
    const read = await call("background_output", { task_id: id, block: false, timeout_ms: 0, full: false, limit: 5 });
    expect(read.isError, textOf(read)).toBeFalsy();
    const cancelled = await call("background_cancel", { task_id: id });
    expect(cancelled.structuredContent).toEqual({ cancelled: [id], skipped: [] });
  });
});
