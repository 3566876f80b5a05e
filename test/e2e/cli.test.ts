import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../src/opencode/embedded.js";
import { ScriptedModel } from "../../dev/model-server.js";
import { startOpencodeSandbox, writeSandboxProject } from "../../dev/opencode-sandbox.js";
import { CLI, McpHarness, text } from "./harness.js";

let model: ScriptedModel;
beforeAll(async () => {
  model = await ScriptedModel.start();
});
afterAll(async () => {
  await model?.close();
});

describe("the CLI", () => {
  it("prints its version and help", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    expect(execFileSync(process.execPath, [CLI, "--version"]).toString().trim()).toBe(pkg.version);
    expect(execFileSync(process.execPath, [CLI, "--help"]).toString()).toMatch(/--opencode-url <url>.*--concurrency <agent=n>/s);
  });

  it("refuses a bad flag with a message naming it, exit code 2", () => {
    try {
      execFileSync(process.execPath, [CLI, "--concurrency", "alpha=zero"], { stdio: "pipe" });
      expect.unreachable();
    } catch (error) {
      const { status, stderr } = error as { status: number; stderr: Buffer };
      expect(status).toBe(2);
      expect(stderr.toString()).toMatch(/--concurrency "alpha=zero" must be <agent>=<n>/);
    }
  });

  it("spawns an embedded opencode, runs a task on it, and stops it on exit", async () => {
    const root = mkdtempSync(join(tmpdir(), "bg-embedded-"));
    const project = writeSandboxProject(root, model.url);
    const mcp = await McpHarness.connect(["--directory", project.directory], { ...project.env, BACKGROUND_AGENTS_LOG_LEVEL: "info" });
    try {
      const task = await mcp.ok<{ task_id: string }>("background_task", { agent: "alpha", description: "embedded", prompt: "[[reply:from embedded]] hi" });
      const view = await mcp.ok<{ status: string; result: string }>("background_output", { task_id: task.task_id, block: true, timeout_ms: 60_000 });
      expect(view).toMatchObject({ status: "completed", result: "from embedded" });
      const pid = Number(/"pid":(\d+)/.exec(mcp.stderr)?.[1]);
      expect(pid).toBeGreaterThan(0);
      await mcp.close();
      await expect.poll(() => alive(pid), { timeout: 10_000 }).toBe(false);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("sends Basic auth to a password-protected opencode, event stream included", async () => {
    const opencode = await startOpencodeSandbox({ modelUrl: model.url, password: "s3cret" });
    const mcp = await McpHarness.connect(["--opencode-url", opencode.url, "--directory", opencode.directory], {
      OPENCODE_SERVER_PASSWORD: "s3cret",
    });
    try {
      const task = await mcp.ok<{ task_id: string }>("background_task", { agent: "beta", description: "auth", prompt: "[[reply:authorised]] hi" });
      const view = await mcp.ok<{ status: string; result: string }>("background_output", { task_id: task.task_id, block: true, timeout_ms: 60_000 });
      expect(view).toMatchObject({ status: "completed", result: "authorised" });
    } finally {
      await mcp.close();
      await opencode.stop();
    }
  });

  it("answers, naming the URL, when opencode is unreachable, and keeps serving", async () => {
    const port = await freePort();
    const mcp = await McpHarness.connect(["--opencode-url", `http://127.0.0.1:${port}`, "--directory", tmpdir()]);
    try {
      const result = await mcp.call("background_task", { agent: "alpha", description: "x", prompt: "y" });
      expect(result.isError).toBe(true);
      expect(text(result)).toMatch(new RegExp(`opencode is unreachable at http://127.0.0.1:${port}`));
      const list = await mcp.ok<{ tasks: unknown[] }>("background_output", {});
      expect(list.tasks).toEqual([]);
    } finally {
      await mcp.close();
    }
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
