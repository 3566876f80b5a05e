import { EventEmitter } from "node:events";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import {
  CallToolResultSchema,
  CreateTaskResultSchema,
  RELATED_TASK_META_KEY,
  TaskStatusNotificationSchema,
  type CallToolResult,
  type Task as McpTask,
} from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { TaskPushRouter } from "../../src/mcp/push.js";
import { createMcpServer } from "../../src/mcp/server.js";
import type { TaskAccess } from "../../src/mcp/owned-tasks.js";
import { CallerDetector } from "../../src/opencode/caller-detector.js";
import { TaskInputError, type LaunchInput, type TaskManager } from "../../src/tasks/manager.js";
import type { TaskChange } from "../../src/tasks/records.js";
import { createTask, isTerminal, type Task, type TerminalStatus } from "../../src/tasks/task.js";

/** Just enough of a TaskManager for the MCP server: tasks in memory, changes emitted, cancel and wait. */
class FakeManager extends EventEmitter<{ change: [TaskChange] }> {
  readonly tasks = new Map<string, Task>();
  readonly cancelled: string[] = [];
  #n = 0;

  async launch(input: LaunchInput): Promise<Task> {
    if (input.agent === "nope") throw new TaskInputError('unknown agent "nope"; the opencode server has: alpha');
    const n = ++this.#n;
    const task = createTask(
      `bg_${String(n).padStart(6, "0")}`,
      { owner: input.owner ?? "local", description: input.description, prompt: input.prompt, agent: input.agent, model: null, parent_session_id: null, timeout_ms: null },
      1_700_000_000_000 + n,
    );
    this.#commit(task, "task.queued");
    return task;
  }

  run(id: string): void {
    const task = this.tasks.get(id)!;
    this.#commit({ ...task, status: "running", started_at: task.created_at + 10 }, "task.running");
  }

  finish(id: string, status: TerminalStatus, fields: { result?: string; error?: string } = {}): void {
    const task = this.tasks.get(id)!;
    if (isTerminal(task.status)) return;
    this.#commit({ ...task, status, completed_at: task.created_at + 1_500, result: fields.result ?? null, error: fields.error ?? null }, `task.${status}`);
  }

  async cancel(id: string): Promise<string | null> {
    const task = this.tasks.get(id);
    if (!task) return "not found";
    if (isTerminal(task.status)) return `already ${task.status}`;
    this.cancelled.push(id);
    this.finish(id, "cancelled", { error: "cancelled by request" });
    return null;
  }

  get(id: string): Task | undefined {
    return this.tasks.get(id);
  }

  list({ limit = -1, offset = 0, owner }: { limit?: number; offset?: number; owner?: string } = {}): Task[] {
    const all = [...this.tasks.values()].filter((t) => owner === undefined || t.owner === owner).sort((a, b) => b.created_at - a.created_at);
    return all.slice(offset, limit < 0 ? undefined : offset + limit);
  }

  queuePosition(task: Task): number | null {
    return task.status === "queued" ? 1 : null;
  }

  #commit(task: Task, event: TaskChange["event"]): void {
    this.tasks.set(task.id, task);
    this.emit("change", { event, task });
  }
}

/** The MCP layer's access to tasks, over the fake manager (no opencode behind it: no caller, no transcripts). */
function accessTo(manager: FakeManager): TaskAccess {
  return { manager: manager as unknown as TaskManager, callers: new CallerDetector(), sessions: { messages: async () => [] } };
}

const ChannelNotification = z.object({
  method: z.literal("notifications/claude/channel"),
  params: z.object({ content: z.string(), meta: z.record(z.string(), z.string()) }),
});

interface Connected {
  client: Client;
  statuses: McpTask[];
  channel: Array<z.infer<typeof ChannelNotification>["params"]>;
}

const open: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((close) => close()));
});

/** A client of `owner` on its own connection; connections given the same push router are sessions of one server (HTTP). */
async function connect(manager: FakeManager, owner = "local", claudeChannel = false, push = new TaskPushRouter(manager, manager)): Promise<Connected> {
  const session = createMcpServer({ tasks: accessTo(manager), push, parentPrompt: true, claudeChannel }, { owner });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await session.server.connect(serverSide);
  push.attach(session);
  const client = new Client({ name: "unit", version: "1.0.0" });
  const connected: Connected = { client, statuses: [], channel: [] };
  client.setNotificationHandler(TaskStatusNotificationSchema, (n) => void connected.statuses.push(n.params));
  client.setNotificationHandler(ChannelNotification, (n) => void connected.channel.push(n.params));
  await client.connect(clientSide);
  await client.listTools();
  open.push(async () => {
    push.close();
    await client.close();
  });
  return connected;
}

const ARGS = { description: "unit task", prompt: "do it", agent: "alpha" };
const settle = () => new Promise((r) => setTimeout(r, 10));

function createAsTask(client: Client, args: Record<string, unknown> = ARGS) {
  return client.request({ method: "tools/call", params: { name: "background_task", arguments: args } }, CreateTaskResultSchema, { task: { ttl: 60_000 } });
}

describe("MCP Tasks over our tasks", () => {
  it("declares tasks and marks background_task (only) as optionally task-augmented", async () => {
    const { client } = await connect(new FakeManager());
    expect(client.getServerCapabilities()?.tasks).toEqual({ list: {}, cancel: {}, requests: { tools: { call: {} } } });
    const { tools } = await client.listTools();
    expect(Object.fromEntries(tools.map((t) => [t.name, t.execution?.taskSupport]))).toEqual({
      background_task: "optional",
      background_output: "forbidden",
      background_cancel: "forbidden",
    });
  });

  it("answers a plain call at once with the launch, not a task (the SDK would otherwise poll)", async () => {
    const manager = new FakeManager();
    const { client } = await connect(manager);
    const started = Date.now();
    const result = (await client.callTool({ name: "background_task", arguments: ARGS })) as CallToolResult;
    expect(Date.now() - started).toBeLessThan(1_000);
    const [task] = [...manager.tasks.values()];
    expect(result.isError).toBeUndefined();
    expect(result.structuredContent).toEqual({ task_id: task!.id, status: "queued", agent: "alpha", description: "unit task", session_id: null, queue_position: 1 });
    expect(result._meta).toBeUndefined();
    // A refused plain launch is the same error result as ever.
    const refused = (await client.callTool({ name: "background_task", arguments: { ...ARGS, agent: "nope" } })) as CallToolResult;
    expect(refused).toMatchObject({ isError: true, content: [{ type: "text", text: expect.stringMatching(/unknown agent "nope"/) }] });
  });

  it("creates, reads, lists and returns the final output of a task-augmented call, with status notifications", async () => {
    const manager = new FakeManager();
    const alice = await connect(manager);
    const created = await createAsTask(alice.client);
    const id = created.task.taskId;
    expect(manager.get(id)).toBeDefined();
    expect(created.task).toMatchObject({ status: "working", ttl: null, pollInterval: 1_000, statusMessage: expect.stringMatching(/queued/) });

    manager.run(id);
    expect(await alice.client.experimental.tasks.getTask(id)).toMatchObject({ taskId: id, status: "working", statusMessage: expect.stringMatching(/^running for /) });
    const pending = alice.client.experimental.tasks.getTaskResult(id, CallToolResultSchema);
    manager.finish(id, "completed", { result: "all done" });
    const result = await pending;
    expect(result.structuredContent).toMatchObject({ task_id: id, status: "completed", result: "all done" });
    expect(result.content[0]).toMatchObject({ type: "text", text: expect.stringMatching(/completed[\s\S]*all done/) });
    expect(result.isError).toBeUndefined();
    expect(result._meta?.[RELATED_TASK_META_KEY]).toEqual({ taskId: id });

    await settle();
    // One status notification: the change from working to completed (queued -> running is working -> working).
    expect(alice.statuses.map((s) => [s.taskId, s.status])).toEqual([[id, "completed"]]);
    const { tasks } = await alice.client.experimental.tasks.listTasks();
    expect(tasks.map((t) => [t.taskId, t.status])).toEqual([[id, "completed"]]);
  });

  it("maps a failed task to failed with an error result", async () => {
    const manager = new FakeManager();
    const { client } = await connect(manager);
    const { task } = await createAsTask(client);
    manager.run(task.taskId);
    manager.finish(task.taskId, "error", { error: "APIError: 400" });
    expect(await client.experimental.tasks.getTask(task.taskId)).toMatchObject({ status: "failed", statusMessage: "failed after 1.5 s: APIError: 400" });
    const result = await client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema);
    expect(result).toMatchObject({ isError: true, structuredContent: { status: "error", error: "APIError: 400" } });
  });

  it("cancels our task on tasks/cancel, and refuses a finished one", async () => {
    const manager = new FakeManager();
    const { client } = await connect(manager);
    const { task } = await createAsTask(client);
    manager.run(task.taskId);
    const cancelled = await client.experimental.tasks.cancelTask(task.taskId);
    expect(cancelled).toMatchObject({ taskId: task.taskId, status: "cancelled", statusMessage: "cancelled after 1.5 s (cancelled by request)" });
    expect(manager.cancelled).toEqual([task.taskId]);
    expect(manager.get(task.taskId)!.status).toBe("cancelled");
    await expect(client.experimental.tasks.cancelTask(task.taskId)).rejects.toMatchObject({ code: -32602 });
  });

  it("gives a launch refused in a task-augmented call a failed task whose result says why", async () => {
    const { client } = await connect(new FakeManager());
    const { task } = await createAsTask(client, { ...ARGS, agent: "nope" });
    expect(task).toMatchObject({ status: "failed", statusMessage: expect.stringMatching(/unknown agent "nope"/) });
    const result = await client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema);
    expect(result).toMatchObject({ isError: true, content: [{ type: "text", text: expect.stringMatching(/unknown agent "nope"/) }] });
  });

  it("keeps owners apart: another owner's task is not found, listed, cancelled or told about", async () => {
    const manager = new FakeManager();
    const alice = await connect(manager, "alice");
    const bob = await connect(manager, "bob");
    await bob.client.experimental.tasks.listTasks(); // bob speaks MCP Tasks too
    const { task } = await createAsTask(alice.client);
    await expect(bob.client.experimental.tasks.getTask(task.taskId)).rejects.toMatchObject({ code: -32602 });
    await expect(bob.client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema)).rejects.toMatchObject({ code: -32602 });
    await expect(bob.client.experimental.tasks.cancelTask(task.taskId)).rejects.toMatchObject({ code: -32602 });
    expect((await bob.client.experimental.tasks.listTasks()).tasks).toEqual([]);
    manager.run(task.taskId);
    manager.finish(task.taskId, "completed", { result: "x" });
    await settle();
    expect(bob.statuses).toEqual([]);
    expect(alice.statuses).toHaveLength(1);
    expect(manager.get(task.taskId)!.status).toBe("completed");
  });

  it("pages tasks/list, newest first", async () => {
    const manager = new FakeManager();
    const { client } = await connect(manager);
    for (let n = 0; n < 130; n++) await manager.launch({ ...ARGS, owner: "local" });
    const first = await client.experimental.tasks.listTasks();
    expect(first.tasks).toHaveLength(100);
    expect(first.tasks[0]!.taskId).toBe("bg_000130");
    const second = await client.experimental.tasks.listTasks(first.nextCursor);
    expect(second.tasks).toHaveLength(30);
    expect(second.nextCursor).toBeUndefined();
  });

  it("sends task status only to clients that speak MCP Tasks", async () => {
    const manager = new FakeManager();
    const plain = await connect(manager);
    await plain.client.callTool({ name: "background_task", arguments: ARGS });
    const [task] = [...manager.tasks.values()];
    manager.run(task!.id);
    manager.finish(task!.id, "completed", { result: "x" });
    await settle();
    expect(plain.statuses).toEqual([]);
  });
});

describe("Claude Code channel events", () => {
  it("declares claude/channel and pushes a channel event naming the task when it ends", async () => {
    const manager = new FakeManager();
    const { client, channel } = await connect(manager, "local", true);
    expect(client.getServerCapabilities()?.experimental).toEqual({ "claude/channel": {} });
    expect(client.getInstructions()).toMatch(/<channel> event/);
    const done = (await client.callTool({ name: "background_task", arguments: ARGS })).structuredContent as { task_id: string };
    const failed = (await client.callTool({ name: "background_task", arguments: { ...ARGS, description: "doomed" } })).structuredContent as { task_id: string };
    const dropped = (await client.callTool({ name: "background_task", arguments: { ...ARGS, description: "dropped" } })).structuredContent as { task_id: string };
    manager.run(done.task_id);
    manager.run(failed.task_id);
    await settle();
    expect(channel).toEqual([]); // nothing until a task ends
    manager.finish(done.task_id, "completed", { result: "The answer\n\nis   42." });
    manager.finish(failed.task_id, "error", { error: "APIError: 400 bad request" });
    await manager.cancel(dropped.task_id);
    await settle();
    expect(channel).toEqual([
      {
        content: `Task ${done.task_id} "unit task" (agent alpha) completed in 1.5 s.\nPreview: The answer is 42.\nRead the full output with background_output {"task_id": "${done.task_id}"}.`,
        meta: { task_id: done.task_id, status: "completed", agent: "alpha" },
      },
      {
        content: `Task ${failed.task_id} "doomed" (agent alpha) failed after 1.5 s: APIError: 400 bad request.\nRead the full output with background_output {"task_id": "${failed.task_id}"}.`,
        meta: { task_id: failed.task_id, status: "error", agent: "alpha" },
      },
      {
        content: `Task ${dropped.task_id} "dropped" (agent alpha) was cancelled before it started (cancelled by request).\nRead the full output with background_output {"task_id": "${dropped.task_id}"}.`,
        meta: { task_id: dropped.task_id, status: "cancelled", agent: "alpha" },
      },
    ]);
  });

  it("without the option: no capability and no channel event", async () => {
    const manager = new FakeManager();
    const { client, channel } = await connect(manager);
    expect(client.getServerCapabilities()?.experimental).toBeUndefined();
    expect(client.getInstructions()).not.toMatch(/<channel>/);
    const { task_id } = (await client.callTool({ name: "background_task", arguments: ARGS })).structuredContent as { task_id: string };
    manager.run(task_id);
    manager.finish(task_id, "completed", { result: "x" });
    await settle();
    expect(channel).toEqual([]);
  });

  it("goes to the launching session only, or to all the owner's sessions once it is gone; never to another owner", async () => {
    const manager = new FakeManager();
    const push = new TaskPushRouter(manager, manager);
    const launcher = await connect(manager, "alice", true, push);
    const other = await connect(manager, "alice", true, push);
    const bob = await connect(manager, "bob", true, push);
    const { task_id } = (await launcher.client.callTool({ name: "background_task", arguments: ARGS })).structuredContent as { task_id: string };
    manager.finish(task_id, "completed", { result: "x" });
    // A task this process did not see launched (e.g. from before a restart) goes to all of alice's sessions.
    const orphan = await manager.launch({ ...ARGS, owner: "alice" });
    manager.finish(orphan.id, "error", { error: "boom" });
    await settle();
    expect(launcher.channel.map((c) => c.meta.task_id)).toEqual([task_id, orphan.id]);
    expect(other.channel.map((c) => c.meta.task_id)).toEqual([orphan.id]);
    expect(bob.channel).toEqual([]);
  });
});
