import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { ResponseMessage } from "@modelcontextprotocol/sdk/shared/responseMessage.js";
import {
  CallToolResultSchema,
  CreateTaskResultSchema,
  RELATED_TASK_META_KEY,
  TaskStatusNotificationSchema,
  type CallToolResult,
  type Task as McpTask,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { McpHarness, startBackend, text, waitFor } from "./harness.js";
import { HttpMcpClient, HttpServerProcess } from "./http-harness.js";

type View = { task_id: string; status: string; result: string | null; error: string | null };

let backend: Awaited<ReturnType<typeof startBackend>>;
let mcp: McpHarness;
const statuses: McpTask[] = [];

beforeAll(async () => {
  backend = await startBackend();
  mcp = await McpHarness.connect(["--opencode-url", backend.opencode.url, "--directory", backend.opencode.directory, "--concurrency", "default=4"]);
  mcp.client.setNotificationHandler(TaskStatusNotificationSchema, (n) => void statuses.push(n.params));
  // As any client does before calling tools: it learns which tools take tasks and their output schemas.
  await mcp.client.listTools();
});

afterAll(async () => {
  await mcp?.close();
  await backend?.stop();
});

const TIMEOUT = { timeout: 120_000 };

/** A task-augmented tools/call of background_task: answered with a CreateTaskResult. */
function createTask(client: Client, args: Record<string, unknown>) {
  return client.request(
    { method: "tools/call", params: { name: "background_task", arguments: { agent: "alpha", ...args } } },
    CreateTaskResultSchema,
    { task: { ttl: 300_000 }, ...TIMEOUT },
  );
}

const statusesOf = (taskId: string) => statuses.filter((s) => s.taskId === taskId).map((s) => s.status);

describe("MCP Tasks (spec 2025-11-25) against a real opencode", () => {
  it("declares tasks and marks background_task as optionally task-augmented", async () => {
    expect(mcp.client.getServerCapabilities()?.tasks).toEqual({ list: {}, cancel: {}, requests: { tools: { call: {} } } });
    const { tools } = await mcp.client.listTools();
    expect(tools.find((t) => t.name === "background_task")?.execution).toEqual({ taskSupport: "optional" });
    expect(tools.find((t) => t.name === "background_output")?.execution).toEqual({ taskSupport: "forbidden" });
  });

  it("still answers a plain tools/call at once, while the task runs on", async () => {
    const started = Date.now();
    const launched = await mcp.ok<Record<string, unknown>>("background_task", {
      agent: "alpha",
      description: "plain call",
      prompt: "[[group:plain]][[hold:plain]][[reply:plain done]] go",
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(Object.keys(launched).sort()).toEqual(["agent", "description", "queue_position", "session_id", "status", "task_id"]);
    expect(launched).toMatchObject({ status: "running", agent: "alpha", description: "plain call", queue_position: null });
    // The answer came while the model is still held: nothing waited for the task.
    await waitFor("the plain task at the model", () => backend.model.inFlight("plain") === 1);
    expect((await mcp.ok<View>("background_output", { task_id: launched.task_id })).status).toBe("running");
    backend.model.release("plain");
    const done = await mcp.ok<View>("background_output", { task_id: launched.task_id, block: true, timeout_ms: 60_000 });
    expect(done).toMatchObject({ status: "completed", result: "plain done" });
    // A client that never used MCP Tasks is sent no task status.
    expect(statusesOf(launched.task_id as string)).toEqual([]);
  });

  it("runs background_task as a task through the SDK's callToolStream: created, polled, result, listed", async () => {
    const messages: ResponseMessage<CallToolResult>[] = [];
    let taskId = "";
    const stream = mcp.client.experimental.tasks.callToolStream(
      { name: "background_task", arguments: { agent: "alpha", description: "as a task", prompt: "[[group:stream]][[hold:stream]][[reply:streamed result]] go" } },
      CallToolResultSchema,
      TIMEOUT,
    );
    for await (const message of stream) {
      messages.push(message);
      if (message.type !== "taskCreated") continue;
      taskId = message.task.taskId;
      expect(message.task).toMatchObject({ status: "working", ttl: null, pollInterval: 1_000 });
      // The MCP task is our task: same id, readable with background_output, listed by tasks/list.
      expect(taskId).toMatch(/^bg_/);
      await waitFor("the task at the model", () => backend.model.inFlight("stream") === 1);
      expect((await mcp.ok<View>("background_output", { task_id: taskId })).status).toBe("running");
      expect(await mcp.client.experimental.tasks.getTask(taskId, TIMEOUT)).toMatchObject({ taskId, status: "working", statusMessage: expect.stringMatching(/^running for /) });
      const listed = await mcp.client.experimental.tasks.listTasks(undefined, TIMEOUT);
      expect(listed.tasks.find((t) => t.taskId === taskId)).toMatchObject({ status: "working" });
      backend.model.release("stream");
    }
    expect(messages[0]!.type).toBe("taskCreated");
    expect(messages.filter((m) => m.type === "taskStatus").length).toBeGreaterThanOrEqual(1);
    const last = messages.at(-1)!;
    expect(last.type).toBe("result");
    const result = (last as { result: CallToolResult }).result;
    expect(result.isError).toBeUndefined();
    expect(result.structuredContent).toMatchObject({ task_id: taskId, status: "completed", result: "streamed result", agent: "alpha" });
    expect(text(result)).toMatch(/completed[\s\S]*streamed result/);
    expect(result._meta?.[RELATED_TASK_META_KEY]).toEqual({ taskId });

    expect(await mcp.client.experimental.tasks.getTask(taskId, TIMEOUT)).toMatchObject({ taskId, status: "completed" });
    // The one status change after the creation: working -> completed.
    await waitFor("the completed status notification", () => statusesOf(taskId).includes("completed"));
    expect(statusesOf(taskId)).toEqual(["completed"]);
  });

  it("blocks tasks/result until the task ends, then returns the final background_output view", async () => {
    const { task } = await createTask(mcp.client, { description: "result waits", prompt: "[[group:result]][[hold:result]][[reply:worth waiting for]] go" });
    await waitFor("the task at the model", () => backend.model.inFlight("result") === 1);
    let settled = false;
    const pending = mcp.client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema, TIMEOUT).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 1_500));
    expect(settled).toBe(false);
    backend.model.release("result");
    const result = await pending;
    expect(result.structuredContent).toMatchObject({ task_id: task.taskId, status: "completed", result: "worth waiting for" });
    expect(result.structuredContent).toEqual(await mcp.ok("background_output", { task_id: task.taskId }));
    expect(result._meta?.[RELATED_TASK_META_KEY]).toEqual({ taskId: task.taskId });
  });

  it("cancels our task on tasks/cancel: the session is aborted and the model request closed", async () => {
    const { task } = await createTask(mcp.client, { description: "to cancel", prompt: "[[group:mcp-cancel]][[hold:mcp-cancel]] mcp-cancel-marker" });
    await waitFor("the task at the model", () => backend.model.inFlight("mcp-cancel") === 1);
    const cancelled = await mcp.client.experimental.tasks.cancelTask(task.taskId, TIMEOUT);
    expect(cancelled).toMatchObject({ taskId: task.taskId, status: "cancelled", statusMessage: expect.stringMatching(/^cancelled after .+ \(cancelled by request\)$/) });
    // opencode closed the model request when the session was aborted.
    await waitFor("the aborted request to close", () => backend.model.inFlight("mcp-cancel") === 0);
    const request = backend.model.requests.find((r) => r.firstUserText.includes("mcp-cancel-marker"))!;
    expect(request.aborted).toBe(true);
    expect((await mcp.ok<View>("background_output", { task_id: task.taskId })).status).toBe("cancelled");
    expect(await mcp.client.experimental.tasks.getTask(task.taskId, TIMEOUT)).toMatchObject({ status: "cancelled" });
    await waitFor("the cancelled status notification", () => statusesOf(task.taskId).includes("cancelled"));
    // A finished task cannot be cancelled (spec: -32602).
    await expect(mcp.client.experimental.tasks.cancelTask(task.taskId, TIMEOUT)).rejects.toMatchObject({ code: -32602 });
    const result = await mcp.client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema, TIMEOUT);
    expect(result).toMatchObject({ isError: true, structuredContent: { status: "cancelled" } });
  });

  it("reports a task that failed as failed, and a refused launch as a failed task saying why", async () => {
    const { task } = await createTask(mcp.client, { description: "provider fails", prompt: "[[error:400]] fail please" });
    const failed = await waitFor("the task to fail", async () => {
      const got = await mcp.client.experimental.tasks.getTask(task.taskId, TIMEOUT);
      return got.status === "failed" && got;
    });
    expect(failed.statusMessage).toMatch(/400/);
    const result = await mcp.client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema, TIMEOUT);
    expect(result).toMatchObject({ isError: true, structuredContent: { status: "error" } });

    const refused = await createTask(mcp.client, { agent: "nope", description: "x", prompt: "y" });
    expect(refused.task).toMatchObject({ status: "failed", statusMessage: expect.stringMatching(/unknown agent "nope"/) });
    const why = await mcp.client.experimental.tasks.getTaskResult(refused.task.taskId, CallToolResultSchema, TIMEOUT);
    expect(why.isError).toBe(true);
    expect(text(why)).toMatch(/unknown agent "nope".*alpha/s);
  });
});

describe("MCP Tasks over Streamable HTTP", () => {
  const ALICE = "alice-token-0123456789abcdef";
  const BOB = "bob-token-0123456789abcdef00";
  let server: HttpServerProcess;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "bg-mcp-tasks-"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ auth: { tokens: { alice: ALICE, bob: BOB } } }));
    server = await HttpServerProcess.start(["--config", join(dir, "config.json"), "--opencode-url", backend.opencode.url, "--directory", backend.opencode.directory]);
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("keeps owners apart: another owner's task is not found, listed or cancelled; the owner's other sessions see it", async () => {
    const alice = await HttpMcpClient.connect(server.url, ALICE);
    const alice2 = await HttpMcpClient.connect(server.url, ALICE);
    const bob = await HttpMcpClient.connect(server.url, BOB);
    const aliceStatuses: McpTask[] = [];
    alice.client.setNotificationHandler(TaskStatusNotificationSchema, (n) => void aliceStatuses.push(n.params));
    try {
      const { task } = await createTask(alice.client, { description: "alice's task", prompt: "[[group:http-task]][[hold:http-task]][[reply:alice only]] go" });
      await waitFor("the task at the model", () => backend.model.inFlight("http-task") === 1);

      await expect(bob.client.experimental.tasks.getTask(task.taskId, TIMEOUT)).rejects.toMatchObject({ code: -32602 });
      await expect(bob.client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema, TIMEOUT)).rejects.toMatchObject({ code: -32602 });
      await expect(bob.client.experimental.tasks.cancelTask(task.taskId, TIMEOUT)).rejects.toMatchObject({ code: -32602 });
      expect((await bob.client.experimental.tasks.listTasks(undefined, TIMEOUT)).tasks.map((t) => t.taskId)).not.toContain(task.taskId);

      expect(await alice2.client.experimental.tasks.getTask(task.taskId, TIMEOUT)).toMatchObject({ status: "working" });
      expect((await alice2.client.experimental.tasks.listTasks(undefined, TIMEOUT)).tasks.map((t) => t.taskId)).toContain(task.taskId);

      backend.model.release("http-task");
      const result = await alice.client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema, TIMEOUT);
      expect(result.structuredContent).toMatchObject({ status: "completed", result: "alice only" });
      // The status change came over the session's GET stream, no request open.
      await waitFor("alice's completed status notification", () => aliceStatuses.some((s) => s.taskId === task.taskId && s.status === "completed"));
      expect((await bob.client.experimental.tasks.listTasks(undefined, TIMEOUT)).tasks).toEqual([]);
    } finally {
      await Promise.all([alice.end(), alice2.end(), bob.end()]);
    }
  });
});
