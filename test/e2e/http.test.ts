import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Progress } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBackend, text, waitFor } from "./harness.js";
import { HttpMcpClient, HttpServerProcess, INIT_BODY, MCP_HEADERS, rawRequest } from "./http-harness.js";

type Launched = { task_id: string; status: string };
type View = { task_id: string; status: string; result: string | null; error: string | null };

const ALICE = "alice-token-0123456789abcdef";
const BOB = "bob-token-0123456789abcdef00";

let backend: Awaited<ReturnType<typeof startBackend>>;
let server: HttpServerProcess;
let serverArgs: string[];

beforeAll(async () => {
  backend = await startBackend();
  const dir = mkdtempSync(join(tmpdir(), "bg-http-e2e-"));
  writeFileSync(join(dir, "config.json"), JSON.stringify({ auth: { tokens: { alice: ALICE, bob: BOB } }, concurrency: { default: 4 } }));
  serverArgs = ["--config", join(dir, "config.json"), "--opencode-url", backend.opencode.url, "--directory", backend.opencode.directory];
  server = await HttpServerProcess.start(serverArgs);
});

afterAll(async () => {
  await server?.stop();
  await backend?.stop();
});

const launch = (client: HttpMcpClient, description: string, prompt: string) =>
  client.ok<Launched>("background_task", { agent: "alpha", description, prompt });
const finished = (client: HttpMcpClient, taskId: string) => client.ok<View>("background_output", { task_id: taskId, block: true, timeout_ms: 60_000 });

describe("MCP over Streamable HTTP against a real opencode", () => {
  it("launches a task and pushes list_changed and its status changes over the GET stream", async () => {
    const alice = await HttpMcpClient.connect(server.url, ALICE);
    try {
      const task = await launch(alice, "pushed", "[[hold:http-push]][[reply:pushed result]] go");
      await waitFor("list_changed for the new task", () => alice.listChanged >= 1);
      await waitFor("the running notification", () => alice.logsFor(task.task_id).includes("task.running"));
      // No request is open from here on: the completion can only come over the session's GET stream.
      backend.model.release("http-push");
      await waitFor("the completed notification", () => alice.logsFor(task.task_id).includes("task.completed"));
      expect(alice.logsFor(task.task_id)).toEqual(["task.queued", "task.running", "task.completed"]);
      const completed = alice.logs.find((l) => l.data.task_id === task.task_id && l.data.event === "task.completed")!;
      expect(completed).toMatchObject({ level: "info", logger: "background-agents", data: { status: "completed", result_preview: "pushed result" } });
      expect(await alice.ok<View>("background_output", { task_id: task.task_id })).toMatchObject({ status: "completed", result: "pushed result" });
    } finally {
      await alice.end();
    }
  });

  it("sends progress every few seconds while background_output blocks, so a short client timeout never fires", async () => {
    const alice = await HttpMcpClient.connect(server.url, ALICE);
    try {
      const task = await launch(alice, "slow", "[[hold:http-progress]][[reply:worth the wait]] go");
      const progress: Progress[] = [];
      const call = alice.client.callTool({ name: "background_output", arguments: { task_id: task.task_id, block: true, timeout_ms: 60_000 } }, undefined, {
        onprogress: (p) => progress.push(p),
        resetTimeoutOnProgress: true,
        timeout: 5_000,
      });
      // Two notifications take about 6 s: longer than the 5 s timeout, which only progress keeps at bay.
      await waitFor("two progress notifications", () => progress.length >= 2, 20_000);
      backend.model.release("http-progress");
      const result = await call;
      expect(result.structuredContent).toMatchObject({ status: "completed", result: "worth the wait" });
      expect(progress[1]!.progress).toBeGreaterThan(progress[0]!.progress);
      expect(progress[0]!.message).toMatch(new RegExp(`Waiting for task ${task.task_id} \\("slow"\\): running`));
    } finally {
      await alice.end();
    }
  });

  it("keeps two owners apart: list, read, cancel, resources and notifications", async () => {
    const alice = await HttpMcpClient.connect(server.url, ALICE);
    const bob = await HttpMcpClient.connect(server.url, BOB);
    try {
      const hers = await launch(alice, "alice's", "[[hold:http-iso]][[reply:alice done]] hers");
      const uri = `background-task://${hers.task_id}`;
      await bob.client.subscribeResource({ uri });
      const his = await launch(bob, "bob's", "[[reply:bob done]] his");
      await finished(bob, his.task_id);
      await waitFor("alice's task running", async () => (await alice.ok<View>("background_output", { task_id: hers.task_id })).status === "running");

      const bobList = await bob.ok<{ tasks: View[] }>("background_output", {});
      expect(bobList.tasks.map((t) => t.task_id)).toContain(his.task_id);
      expect(bobList.tasks.map((t) => t.task_id)).not.toContain(hers.task_id);
      const aliceList = await alice.ok<{ tasks: View[] }>("background_output", {});
      expect(aliceList.tasks.map((t) => t.task_id)).toContain(hers.task_id);
      expect(aliceList.tasks.map((t) => t.task_id)).not.toContain(his.task_id);

      const read = await bob.call("background_output", { task_id: hers.task_id });
      expect(read.isError).toBe(true);
      expect(text(read)).toMatch(new RegExp(`Unknown task_id "${hers.task_id}"`));
      const cancelOne = await bob.call("background_cancel", { task_id: hers.task_id });
      expect(cancelOne.isError).toBe(true);
      expect(text(cancelOne)).toMatch(/Unknown task_id/);
      const cancelAll = await bob.ok<{ cancelled: string[] }>("background_cancel", { all: true });
      expect(cancelAll.cancelled).not.toContain(hers.task_id);
      expect((await alice.ok<View>("background_output", { task_id: hers.task_id })).status).toBe("running");

      const bobResources = await bob.client.listResources();
      expect(bobResources.resources.map((r) => r.uri)).toContain(`background-task://${his.task_id}`);
      expect(bobResources.resources.map((r) => r.uri)).not.toContain(uri);
      await expect(bob.client.readResource({ uri })).rejects.toThrow(/Unknown task/);
      expect((await alice.client.listResources()).resources.map((r) => r.uri)).toContain(uri);

      // Bob cannot use Alice's session either: with his token it does not exist.
      const hijack = await rawRequest(server.url, {
        method: "POST",
        headers: { ...MCP_HEADERS, Authorization: `Bearer ${BOB}`, "mcp-session-id": alice.sessionId, "mcp-protocol-version": "2025-11-25" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "tools/call", params: { name: "background_output", arguments: {} } }),
      });
      expect(hijack.status).toBe(404);

      backend.model.release("http-iso");
      await finished(alice, hers.task_id);
      await waitFor("alice's completion notification", () => alice.logsFor(hers.task_id).includes("task.completed"));
      await waitFor("bob's own notifications", () => bob.logsFor(his.task_id).includes("task.completed"));
      // Give a stray push time to arrive before asserting that none did.
      await new Promise((r) => setTimeout(r, 500));
      expect(bob.logsFor(hers.task_id)).toEqual([]);
      expect(bob.updated).not.toContain(uri);
      expect(alice.logsFor(his.task_id)).toEqual([]);
    } finally {
      await alice.end();
      await bob.end();
    }
  });

  it("lets a client that reconnects with a new session read its tasks and get new pushes", async () => {
    const first = await HttpMcpClient.connect(server.url, ALICE);
    const task = await launch(first, "outlives its session", "[[hold:http-reconnect]][[reply:still mine]] go");
    await first.end();

    const second = await HttpMcpClient.connect(server.url, ALICE);
    try {
      expect(second.sessionId).not.toBe(first.sessionId);
      const list = await second.ok<{ tasks: View[] }>("background_output", {});
      expect(list.tasks.map((t) => t.task_id)).toContain(task.task_id);
      const resource = await second.client.readResource({ uri: `background-task://${task.task_id}` });
      expect(JSON.parse((resource.contents[0] as { text: string }).text)).toMatchObject({ task_id: task.task_id });

      // The launching session is gone, so the task's news goes to its owner's sessions.
      backend.model.release("http-reconnect");
      await waitFor("the completion pushed to the new session", () => second.logsFor(task.task_id).includes("task.completed"));
      expect(await second.ok<View>("background_output", { task_id: task.task_id })).toMatchObject({ status: "completed", result: "still mine" });

      const next = await launch(second, "launched after reconnecting", "[[reply:fresh]] go");
      await waitFor("the new task's completion", () => second.logsFor(next.task_id).includes("task.completed"));
    } finally {
      await second.end();
    }
  });

  it("honours logging/setLevel per session", async () => {
    const quiet = await HttpMcpClient.connect(server.url, ALICE);
    const loud = await HttpMcpClient.connect(server.url, ALICE);
    try {
      await quiet.client.setLoggingLevel("error");
      const fine = await launch(quiet, "fine", "[[reply:ok]] go");
      const broken = await launch(quiet, "broken", "[[error:400]] fail");
      for (const t of [fine, broken]) await loud.client.subscribeResource({ uri: `background-task://${t.task_id}` });
      await finished(quiet, fine.task_id);
      await finished(quiet, broken.task_id);
      await waitFor("the loud session's notifications", () => loud.logsFor(fine.task_id).includes("task.completed") && loud.logsFor(broken.task_id).includes("task.error"));
      await waitFor("the error notification in the quiet session", () => quiet.logsFor(broken.task_id).includes("task.error"));
      expect(quiet.logsFor(fine.task_id)).toEqual([]);
      expect(quiet.logsFor(broken.task_id)).toEqual(["task.error"]);
    } finally {
      await quiet.end();
      await loud.end();
    }
  });

  it("replays notifications sent while the GET stream was down, from Last-Event-ID or from the first one missed", async () => {
    const headers = { ...MCP_HEADERS, Authorization: `Bearer ${ALICE}` };
    const init = await fetch(server.url, { method: "POST", headers, body: INIT_BODY });
    const sessionId = init.headers.get("mcp-session-id")!;
    await init.text();
    const session = { ...headers, "mcp-session-id": sessionId, "mcp-protocol-version": "2025-11-25" };
    await fetch(server.url, { method: "POST", headers: session, body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }) });
    const listChanged = (events: SseEvent[]) => events.filter((e) => e.data.includes("notifications/resources/list_changed"));

    // Another session of the same owner creates tasks; each one is a list_changed on this session's GET stream.
    const other = await HttpMcpClient.connect(server.url, ALICE);
    try {
      // 1. Nothing open yet: the first GET stream still gets what was sent before it opened.
      await launch(other, "before the stream", "[[reply:x]] go");
      const first = await readSse(server.url, session, (events) => listChanged(events).length >= 1);
      const seen = listChanged(first)[0]!.id!;
      expect(seen).toMatch(/^\d+__GET_stream$/);

      // 2. The stream dropped after that event: resuming from its id replays what came after it.
      await launch(other, "while the stream was down", "[[reply:x]] go");
      const resumed = await readSse(server.url, { ...session, "Last-Event-ID": seen }, (events) => listChanged(events).length >= 1);
      const replayed = listChanged(resumed)[0]!;
      expect(Number(replayed.id!.split("_")[0])).toBeGreaterThan(Number(seen.split("_")[0]));
    } finally {
      await other.end();
      await fetch(server.url, { method: "DELETE", headers: session });
    }
  });

  it("pages resources/list", async () => {
    const alice = await HttpMcpClient.connect(server.url, ALICE);
    try {
      const first = await alice.client.listResources();
      expect(first.resources.length).toBeGreaterThan(0);
      expect(first.resources.length).toBeLessThanOrEqual(100);
      await expect(alice.client.listResources({ cursor: "not-a-cursor" })).rejects.toThrow(/Invalid cursor/);
    } finally {
      await alice.end();
    }
  });

  it("on SIGTERM leaves running opencode sessions running, and the next start picks their tasks up", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "bg-http-restart-"));
    let own = await HttpServerProcess.start([...serverArgs, "--data-dir", dataDir]);
    let alice = await HttpMcpClient.connect(own.url, ALICE);
    const task = await launch(alice, "spans a restart", "[[group:http-restart]][[hold:http-restart]][[reply:survived]] go");
    await waitFor("the task at the model", () => backend.model.inFlight("http-restart") === 1);
    expect(await own.stop("SIGTERM")).toBe(0);
    await alice.client.close();
    // The model request is still open: opencode's session was not aborted.
    await new Promise((r) => setTimeout(r, 500));
    expect(backend.model.inFlight("http-restart")).toBe(1);

    own = await HttpServerProcess.start([...serverArgs, "--data-dir", dataDir]);
    alice = await HttpMcpClient.connect(own.url, ALICE);
    try {
      expect((await alice.ok<View>("background_output", { task_id: task.task_id })).status).toBe("running");
      backend.model.release("http-restart");
      expect(await finished(alice, task.task_id)).toMatchObject({ status: "completed", result: "survived" });
    } finally {
      await alice.end();
      await own.stop();
    }
  });
});

interface SseEvent {
  id?: string;
  data: string;
}

/** Opens a GET stream, collects its events until `enough` holds (or 10 s), then disconnects. */
async function readSse(url: string, headers: Record<string, string>, enough: (events: SseEvent[]) => boolean): Promise<SseEvent[]> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 10_000);
  const events: SseEvent[] = [];
  try {
    const response = await fetch(url, { headers: { ...headers, Accept: "text/event-stream" }, signal: abort.signal });
    expect(response.status).toBe(200);
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of response.body! as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event: SseEvent = { data: "" };
        for (const line of block.split("\n")) {
          if (line.startsWith("id:")) event.id = line.slice(3).trim();
          if (line.startsWith("data:")) event.data += line.slice(5).trim();
        }
        if (event.id !== undefined || event.data) events.push(event);
      }
      if (enough(events)) break;
    }
  } catch (error) {
    if (!abort.signal.aborted) throw error;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return events;
}
