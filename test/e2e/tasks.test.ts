import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { McpHarness, startBackend, text, waitFor } from "./harness.js";

type Launched = { task_id: string; status: string; queue_position: number | null; session_id: string | null };
type View = {
  task_id: string;
  status: string;
  result: string | null;
  error: string | null;
  session_id: string | null;
  queue_position: number | null;
  duration_ms: number | null;
  progress: { tool_calls: number; last_tool: string | null; last_message: string | null };
  messages?: Array<{ role: string; type: string; text?: string; tool?: string; status?: string }>;
};

let backend: Awaited<ReturnType<typeof startBackend>>;
let mcp: McpHarness;

beforeAll(async () => {
  backend = await startBackend();
  mcp = await McpHarness.connect([
    "--opencode-url",
    backend.opencode.url,
    "--directory",
    backend.opencode.directory,
    "--concurrency",
    "alpha=2",
    "--concurrency",
    "beta=1",
  ]);
});

afterAll(async () => {
  await mcp?.close();
  await backend?.stop();
});

const launch = (args: Record<string, unknown>) => mcp.ok<Launched>("background_task", { agent: "alpha", ...args });
const output = (args: Record<string, unknown>) => mcp.ok<View>("background_output", args);
const finished = (taskId: string) => output({ task_id: taskId, block: true, timeout_ms: 60_000 });

describe("background tasks against a real opencode server", () => {
  it("runs at most the agent's limit at once, queues the rest at once, and keeps the results", async () => {
    const started = Date.now();
    const tasks = [];
    for (const n of [1, 2, 3]) {
      tasks.push(await launch({ description: `limit ${n}`, prompt: `[[group:limit]][[hold:limit]][[reply:answer ${n}]] task ${n}` }));
    }
    // Launches return at once even though the third has to wait for a slot.
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(tasks.map((t) => t.status)).toEqual(["running", "running", "queued"]);
    expect(tasks[2]!.queue_position).toBe(1);
    await waitFor("two requests at the model", () => backend.model.inFlight("limit") === 2);
    const third = await output({ task_id: tasks[2]!.task_id });
    expect(third.status).toBe("queued");
    expect(third.queue_position).toBe(1);

    backend.model.release("limit");
    const views = await Promise.all(tasks.map((t) => finished(t.task_id)));
    expect(views.map((v) => v.status)).toEqual(["completed", "completed", "completed"]);
    expect(views.map((v) => v.result)).toEqual(["answer 1", "answer 2", "answer 3"]);
    expect(backend.model.maxInFlight("limit")).toBe(2);
    // Finished tasks stay readable, with their timings.
    const again = await output({ task_id: tasks[0]!.task_id });
    expect(again).toMatchObject({ status: "completed", result: "answer 1" });
    expect(again.duration_ms).toBeGreaterThan(0);
  });

  it("cancels a queued task before it reaches the model and aborts a running one", async () => {
    const running = await launch({ agent: "beta", description: "to abort", prompt: "[[group:cancel]][[hold:cancel]] cancel-running-marker" });
    const queued = await launch({ agent: "beta", description: "never runs", prompt: "[[group:cancel]] cancel-queued-marker" });
    expect(queued).toMatchObject({ status: "queued", queue_position: 1 });
    await waitFor("the running task at the model", () => backend.model.inFlight("cancel") === 1);

    const one = await mcp.ok<{ cancelled: string[] }>("background_cancel", { task_id: queued.task_id });
    expect(one.cancelled).toEqual([queued.task_id]);
    const two = await mcp.ok<{ cancelled: string[] }>("background_cancel", { task_id: running.task_id });
    expect(two.cancelled).toEqual([running.task_id]);

    expect((await output({ task_id: queued.task_id })).status).toBe("cancelled");
    expect((await output({ task_id: running.task_id })).status).toBe("cancelled");
    // opencode closed the model request when the session was aborted.
    await waitFor("the aborted request to close", () => backend.model.inFlight("cancel") === 0);
    expect(backend.model.sawText("cancel-queued-marker")).toBe(false);

    // The slot was freed: a new beta task runs to completion.
    const next = await launch({ agent: "beta", description: "after cancel", prompt: "[[reply:beta free]] go" });
    expect((await finished(next.task_id)).result).toBe("beta free");

    // Cancelling a finished task skips it, with the reason.
    const again = await mcp.ok<{ cancelled: string[]; skipped: Array<{ task_id: string; reason: string }> }>("background_cancel", {
      task_id: running.task_id,
    });
    expect(again).toEqual({ cancelled: [], skipped: [{ task_id: running.task_id, reason: "already cancelled" }] });
  });

  it("rejects an unknown agent, naming the agents that exist", async () => {
    const result = await mcp.call("background_task", { description: "x", prompt: "y", agent: "nope" });
    expect(result.isError).toBe(true);
    expect(text(result)).toMatch(/unknown agent "nope".*alpha.*beta/s);
  });

  it("rejects empty input and bad ids with a clear error", async () => {
    const empty = await mcp.call("background_task", { description: " ", prompt: "y", agent: "alpha" });
    expect(empty.isError).toBe(true);
    expect(text(empty)).toMatch(/description must not be empty/);
    const unknown = await mcp.call("background_output", { task_id: "bg_missing" });
    expect(unknown.isError).toBe(true);
    expect(text(unknown)).toMatch(/Unknown task_id "bg_missing"/);
    const neither = await mcp.call("background_cancel", {});
    expect(neither.isError).toBe(true);
    expect(text(neither)).toMatch(/task_id .* or all: true/);
  });

  it("refuses a parameter a tool does not take, naming it and the allowed ones, and launches nothing", async () => {
    const { tools } = await mcp.client.listTools();
    expect(tools.find((t) => t.name === "background_task")?.inputSchema.additionalProperties).toBe(false);
    const ids = async () => (await mcp.ok<{ tasks: View[] }>("background_output", { limit: 500 })).tasks.map((t) => t.task_id);
    const before = await ids();
    const refused = await mcp.call("background_task", {
      description: "wrong place",
      prompt: "[[reply:never sent]] unknown-parameter-marker",
      agent: "alpha",
      isolation: "worktree",
    });
    expect(refused.isError).toBe(true);
    expect(text(refused)).toBe(
      'background_task does not take "isolation"; allowed: description, prompt, agent, model, parent_session_id, timeout_ms',
    );
    expect(await ids()).toEqual(before);
    // Give a launch that slipped through time to reach the model.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(backend.model.sawText("unknown-parameter-marker")).toBe(false);
  });

  it("ends a task with the provider's error when the model answers 400", async () => {
    const task = await launch({ description: "bad request", prompt: "[[error:400]] fail please" });
    const view = await finished(task.task_id);
    expect(view.status).toBe("error");
    expect(view.error).toMatch(/400/);
    expect(view.result).toBeNull();
  });

  it("counts one tool call for a tool-calling child and returns its transcript", async () => {
    const task = await launch({ description: "uses bash", prompt: "[[tool:bash:echo tool-output-marker]][[reply:used the tool]] run it" });
    const view = await finished(task.task_id);
    expect(view.status).toBe("completed");
    expect(view.progress.tool_calls).toBe(1);
    expect(view.progress.last_tool).toBe("bash");
    expect(view.result).toBe("used the tool");

    const full = await output({ task_id: task.task_id, full: true });
    const tools = full.messages!.filter((m) => m.type === "tool");
    expect(tools).toMatchObject([{ role: "assistant", tool: "bash", status: "completed" }]);
    expect(full.messages!.at(-1)).toMatchObject({ role: "assistant", type: "text", text: "used the tool" });
    // Clients that hand the model only the text block: the transcript is there too.
    const fullText = text(await mcp.call("background_output", { task_id: task.task_id, full: true }));
    expect(fullText).toMatch(/\[assistant\] tool bash \(completed\)\n {2}input: .*echo tool-output-marker[\s\S]*output: .*tool-output-marker/);
    expect(fullText).toContain("[assistant] used the tool");
    expect(fullText).toContain("1 tool call(s), last bash");
    // The background session cannot start subagents of its own.
    const request = backend.model.requests.find((r) => r.firstUserText.includes("tool-output-marker"))!;
    expect(request.toolNames).toContain("bash");
    expect(request.toolNames).not.toContain("task");
  });

  it("pushes logging notifications for every status change and resource updates to subscribers", async () => {
    const task = await launch({ description: "watched", prompt: "[[hold:watched]][[reply:seen]] watch me" });
    await mcp.client.subscribeResource({ uri: `background-task://${task.task_id}` });
    backend.model.release("watched");
    await finished(task.task_id);
    const events = await waitFor("the completed notification", () => {
      const mine = mcp.logs.filter((l) => l.data.task_id === task.task_id);
      return mine.some((l) => l.data.event === "task.completed") && mine;
    });
    expect(events.map((e) => e.data.event)).toEqual(["task.queued", "task.running", "task.completed"]);
    expect(events[2]).toMatchObject({
      level: "info",
      logger: "background-agents",
      data: { status: "completed", agent: "alpha", description: "watched", result_preview: "seen" },
    });
    expect(mcp.updated).toContain(`background-task://${task.task_id}`);
    const resource = await mcp.client.readResource({ uri: `background-task://${task.task_id}` });
    const first = resource.contents[0] as { text: string; mimeType: string };
    expect(first.mimeType).toBe("application/json");
    expect(JSON.parse(first.text)).toMatchObject({ task_id: task.task_id, status: "completed", result: "seen" });
  });

  it("prompts the parent session when a task ends, keeping the parent's agent", async () => {
    const sdk = createOpencodeClient({ baseUrl: backend.opencode.url, directory: backend.opencode.directory });
    const parent = (await sdk.session.create({ title: "parent" })).data!;
    await sdk.session.prompt({ sessionID: parent.id, agent: "beta", parts: [{ type: "text", text: "[[reply:parent ready]] hi" }] });

    const task = await launch({ description: "child work", prompt: "[[reply:child result]] work", parent_session_id: parent.id });
    const launchText = await mcp.call("background_task", {
      agent: "alpha",
      description: "text check",
      prompt: "[[reply:x]] y",
      parent_session_id: parent.id,
    });
    expect(text(launchText)).toMatch(/will be prompted.*do not poll/);
    await finished(task.task_id);

    const prompt = await waitFor("the parent prompt", async () => {
      const messages = (await sdk.session.messages({ sessionID: parent.id })).data!;
      return messages.find(
        (m) => m.info.role === "user" && m.parts.some((p) => p.type === "text" && p.text.includes(task.task_id)),
      );
    });
    const body = prompt.parts.map((p) => (p.type === "text" ? p.text : "")).join("");
    expect(body).toContain("[BACKGROUND TASK COMPLETED]");
    expect(body).toContain('"child work"');
    expect(body).toContain("background_output");
    expect(prompt.info).toMatchObject({ agent: "beta" });
    // The child session was created under the parent.
    const child = (await sdk.session.get({ sessionID: (await output({ task_id: task.task_id })).session_id! })).data!;
    expect(child.parentID).toBe(parent.id);
  });

  it("times a task out when timeout_ms passes", async () => {
    const task = await launch({ description: "too slow", prompt: "[[group:slow]][[hold:never]] slow", timeout_ms: 1_500 });
    const view = await finished(task.task_id);
    expect(view.status).toBe("error");
    expect(view.error).toMatch(/timed out after 1.5 s/);
    await waitFor("the timed-out request to close", () => backend.model.inFlight("slow") === 0);
  });

  it("lists tasks newest first, a page at a time", async () => {
    const list = await mcp.ok<{ tasks: View[]; next_cursor: string | null }>("background_output", {});
    expect(list.tasks.length).toBeGreaterThan(5);
    expect(list.next_cursor).toBeNull();
    const listText = text(await mcp.call("background_output", {}));
    for (const t of list.tasks) expect(listText).toContain(`- ${t.task_id} "`);
    const created = list.tasks.map((t) => (t as unknown as { created_at: string }).created_at);
    expect([...created].sort().reverse()).toEqual(created);

    const first = await mcp.ok<{ tasks: View[]; next_cursor: string }>("background_output", { limit: 3 });
    const second = await mcp.ok<{ tasks: View[]; next_cursor: string | null }>("background_output", { limit: 3, cursor: first.next_cursor });
    expect([...first.tasks, ...second.tasks].map((t) => t.task_id)).toEqual(list.tasks.slice(0, 6).map((t) => t.task_id));
    const bad = await mcp.call("background_output", { cursor: "nonsense" });
    expect(bad.isError).toBe(true);
    expect(text(bad)).toMatch(/Invalid cursor "nonsense"/);
  });
});
