import { createOpencodeClient, type OpencodeClient } from "@opencode-ai/sdk/v2";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSandboxProject } from "../../dev/opencode-sandbox.js";
import { CLI, McpHarness, startBackend, waitFor } from "./harness.js";

type View = { task_id: string; status: string; result: string | null; error: string | null };

let backend: Awaited<ReturnType<typeof startBackend>>;
let sdk: OpencodeClient;
beforeAll(async () => {
  backend = await startBackend();
  sdk = createOpencodeClient({ baseUrl: backend.opencode.url, directory: backend.opencode.directory });
});
afterAll(async () => {
  await backend?.stop();
});

const tempDir = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));
const attach = (dataDir: string, ...extra: string[]) =>
  McpHarness.connect(["--opencode-url", backend.opencode.url, "--directory", backend.opencode.directory, "--data-dir", dataDir, ...extra]);

function kill(mcp: McpHarness): void {
  process.kill(mcp.transport.pid!, "SIGKILL");
}

async function parentWithHistory(): Promise<string> {
  const parent = (await sdk.session.create({ title: "parent" })).data!;
  await sdk.session.prompt({ sessionID: parent.id, agent: "alpha", parts: [{ type: "text", text: "[[reply:ok]] parent" }] });
  return parent.id;
}

/** How many prompts into the parent name the task. */
async function notificationsFor(parent: string, taskId: string): Promise<number> {
  const messages = (await sdk.session.messages({ sessionID: parent })).data!;
  return messages.filter((m) => m.info.role === "user" && m.parts.some((p) => p.type === "text" && p.text.includes(`Task ${taskId} `))).length;
}

const requestsWith = (marker: string) => backend.model.requests.filter((r) => r.firstUserText.includes(marker)).length;

describe("durable tasks", () => {
  it("survives a SIGKILL: the running task completes, the queued one runs, nothing is lost or repeated", async () => {
    const dataDir = tempDir("bg-durable-");
    const parent = await parentWithHistory();
    let mcp = await attach(dataDir, "--concurrency", "alpha=1");
    const launch = (description: string, prompt: string) =>
      mcp.ok<View>("background_task", { agent: "alpha", description, prompt, parent_session_id: parent });

    const before = await launch("done before", "[[reply:early result]] dur-early");
    expect((await mcp.ok<View>("background_output", { task_id: before.task_id, block: true, timeout_ms: 60_000 })).status).toBe("completed");
    await waitFor("the first parent notification", async () => (await notificationsFor(parent, before.task_id)) === 1);

    const running = await launch("spans the kill", "[[hold:dur-run]][[reply:survived]] dur-running");
    const queued = await launch("waits in queue", "[[reply:ran after restart]] dur-queued");
    expect(queued.status).toBe("queued");
    await waitFor("the running task at the model", () => requestsWith("dur-running") === 1);
    kill(mcp);
    await mcp.close().catch(() => undefined);

    mcp = await attach(dataDir, "--concurrency", "alpha=1");
    // The queued task still waits: the recovered running task holds the only slot.
    expect((await mcp.ok<View>("background_output", { task_id: queued.task_id })).status).toBe("queued");
    backend.model.release("dur-run");
    const results = await Promise.all(
      [running, queued].map((t) => mcp.ok<View>("background_output", { task_id: t.task_id, block: true, timeout_ms: 60_000 })),
    );
    expect(results.map((r) => [r.status, r.result])).toEqual([
      ["completed", "survived"],
      ["completed", "ran after restart"],
    ]);
    expect(await mcp.ok<View>("background_output", { task_id: before.task_id })).toMatchObject({ status: "completed", result: "early result" });
    expect([requestsWith("dur-early"), requestsWith("dur-running"), requestsWith("dur-queued")]).toEqual([1, 1, 1]);
    for (const task of [running, queued]) {
      await waitFor(`the parent notification for ${task.task_id}`, async () => (await notificationsFor(parent, task.task_id)) >= 1);
    }
    await new Promise((r) => setTimeout(r, 500));
    for (const task of [before, running, queued]) expect(await notificationsFor(parent, task.task_id)).toBe(1);
    await mcp.close();
  });

  it("gives a task back the session opencode created for it when the server died before recording it", async () => {
    const dataDir = tempDir("bg-unrecorded-");
    let mcp = await attach(dataDir);
    const task = await mcp.ok<View>("background_task", { agent: "alpha", description: "unrecorded", prompt: "[[hold:dur-unrec]][[reply:kept]] dur-unrec" });
    await waitFor("the request at the model", () => requestsWith("dur-unrec") === 1);
    kill(mcp);
    await mcp.close().catch(() => undefined);
    const session = (await sessionOf(dataDir, task.task_id))!;
    // As if the kill came between opencode creating the session and our record of it.
    const db = new Database(join(dataDir, "tasks.db"));
    db.prepare("UPDATE tasks SET session_id = NULL, data = json_set(data, '$.session_id', NULL, '$.prompted_at', NULL) WHERE id = ?").run(task.task_id);
    db.close();

    mcp = await attach(dataDir);
    await waitFor("the task to get its session back", async () => (await sessionOf(dataDir, task.task_id)) === session);
    backend.model.release("dur-unrec");
    const view = await mcp.ok<View>("background_output", { task_id: task.task_id, block: true, timeout_ms: 60_000 });
    expect(view).toMatchObject({ status: "completed", result: "kept" });
    const marked = (await sdk.session.list({ search: task.task_id })).data!;
    expect(marked.map((s) => s.id)).toEqual([session]);
    expect(requestsWith("dur-unrec")).toBe(1);
    await mcp.close();
  });

  it("announces once, after start, a task that finished while the server was down", async () => {
    const dataDir = tempDir("bg-downtime-");
    const parent = await parentWithHistory();
    let mcp = await attach(dataDir);
    const task = await mcp.ok<View>("background_task", {
      agent: "beta",
      description: "finishes during downtime",
      prompt: "[[hold:dur-down]][[reply:finished while down]] dur-down",
      parent_session_id: parent,
    });
    await waitFor("the request at the model", () => requestsWith("dur-down") === 1);
    kill(mcp);
    await mcp.close().catch(() => undefined);
    backend.model.release("dur-down");
    await waitFor("opencode to finish the session", async () => {
      const messages = (await sdk.session.messages({ sessionID: (await sessionOf(dataDir, task.task_id))! })).data!;
      return messages.some((m) => m.info.role === "assistant" && m.info.time.completed && m.info.finish === "stop");
    });

    mcp = await attach(dataDir);
    const view = await mcp.ok<View>("background_output", { task_id: task.task_id, block: true, timeout_ms: 30_000 });
    expect(view).toMatchObject({ status: "completed", result: "finished while down" });
    await waitFor("the completed notification", () => mcp.logs.some((l) => l.data.task_id === task.task_id && l.data.event === "task.completed"));
    await waitFor("the parent notification", async () => (await notificationsFor(parent, task.task_id)) === 1);
    await new Promise((r) => setTimeout(r, 500));
    expect(mcp.logs.filter((l) => l.data.task_id === task.task_id && l.data.event === "task.completed")).toHaveLength(1);
    expect(await notificationsFor(parent, task.task_id)).toBe(1);
    expect(requestsWith("dur-down")).toBe(1);
    await mcp.close();
  });

  it("refuses a second server on the same data dir, naming the first", async () => {
    const dataDir = tempDir("bg-lock-");
    const first = await attach(dataDir);
    const failure = await run([CLI, "--opencode-url", backend.opencode.url, "--data-dir", dataDir]);
    expect(failure.code).toBe(1);
    expect(failure.stderr).toMatch(new RegExp(`data dir ${dataDir} is in use by another background-agents-mcp \\(pid ${first.transport.pid}`));
    await first.close();
  });

  it("refuses a corrupt or newer database without touching it, and an unwritable data dir", async () => {
    const corrupt = tempDir("bg-corrupt-");
    writeFileSync(join(corrupt, "tasks.db"), "this is not a database, but it is somebody's file ".repeat(100));
    const original = readFileSync(join(corrupt, "tasks.db"));
    const bad = await run([CLI, "--opencode-url", backend.opencode.url, "--data-dir", corrupt]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(new RegExp(`${join(corrupt, "tasks.db")} is not a usable task database`));
    expect(readFileSync(join(corrupt, "tasks.db")).equals(original)).toBe(true);

    const newer = tempDir("bg-newer-");
    const db = new Database(join(newer, "tasks.db"));
    db.pragma("user_version = 99");
    db.close();
    const refused = await run([CLI, "--opencode-url", backend.opencode.url, "--data-dir", newer]);
    expect(refused.stderr).toMatch(/has schema version 99, newer than this version/);

    const file = join(tempDir("bg-file-"), "plain-file");
    writeFileSync(file, "x");
    const unwritable = await run([CLI, "--opencode-url", backend.opencode.url, "--data-dir", join(file, "data")]);
    expect(unwritable.code).toBe(1);
    expect(unwritable.stderr).toMatch(/data dir .*plain-file\/data is not writable/);
  });

  it("ends a task interrupted with its embedded opencode, or resumes it when configured", async () => {
    for (const resume of [false, true]) {
      const root = tempDir("bg-interrupt-");
      const project = writeSandboxProject(root, backend.model.url);
      const dataDir = join(root, "data");
      const args = ["--directory", project.directory, "--data-dir", dataDir];
      if (resume) {
        writeFileSync(join(root, "config.json"), JSON.stringify({ recovery: { resumeInterrupted: true } }));
        args.push("--config", join(root, "config.json"));
      }
      const marker = `dur-interrupt-${resume}`;
      let mcp = await McpHarness.connect(args, project.env);
      const task = await mcp.ok<View>("background_task", { agent: "alpha", description: "interrupted", prompt: `[[hold:${marker}]][[reply:resumed ok]] ${marker}` });
      await waitFor("the request at the model", () => requestsWith(marker) === 1);
      kill(mcp);
      await mcp.close().catch(() => undefined);
      // The guard stops the embedded opencode with us, which closes the model request.
      await waitFor("the interrupted request to close", () => !backend.model.requests.some((r) => r.firstUserText.includes(marker) && r.endedAt === undefined));
      backend.model.release(marker);

      mcp = await McpHarness.connect(args, project.env);
      const view = await mcp.ok<View>("background_output", { task_id: task.task_id, block: true, timeout_ms: 60_000 });
      if (resume) {
        expect(view).toMatchObject({ status: "completed", result: "resumed ok" });
        expect(backend.model.requests.filter((r) => r.firstUserText.includes(marker)).length).toBeGreaterThanOrEqual(2);
      } else {
        expect(view.status).toBe("error");
        expect(view.error).toMatch(/interrupted by restart/);
      }
      await mcp.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

async function sessionOf(dataDir: string, taskId: string): Promise<string | undefined> {
  const db = new Database(join(dataDir, "tasks.db"), { readonly: true });
  try {
    const row = db.prepare<[string], { data: string }>("SELECT data FROM tasks WHERE id = ?").get(taskId);
    return row ? (JSON.parse(row.data) as { session_id: string }).session_id : undefined;
  } finally {
    db.close();
  }
}

async function run(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await promisify(execFile)(process.execPath, args, { timeout: 30_000 });
    return { code: 0, stderr: "" };
  } catch (error) {
    const { code, stderr } = error as { code: number; stderr: string };
    return { code, stderr };
  }
}
