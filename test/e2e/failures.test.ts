import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ScriptedModel } from "../../dev/model-server.js";
import { startOpencodeSandbox, writeSandboxProject, type OpencodeSandbox } from "../../dev/opencode-sandbox.js";
import { freePort, startEmbeddedOpencode } from "../../src/opencode/embedded.js";
import { killOpencodeUnder, McpHarness, waitFor } from "./harness.js";

type View = {
  task_id: string;
  status: string;
  result: string | null;
  error: string | null;
  progress: {
    tool_calls: number;
    retry?: { attempt: number; message: string } | null;
    permission?: { permission: string; decision: string } | null;
    todo_continuations?: number;
    incomplete_todos?: Array<{ content: string; status: string }>;
  };
};

let model: ScriptedModel;
let opencode: OpencodeSandbox;
const root = mkdtempSync(join(tmpdir(), "bg-failures-"));

beforeAll(async () => {
  model = await ScriptedModel.start();
  // Reading outside the project asks for `external_directory`: the permission tests need the ask.
  opencode = await startOpencodeSandbox({ modelUrl: model.url, overrides: { permission: { external_directory: "ask", doom_loop: "allow" } } });
});
afterAll(async () => {
  await opencode?.stop();
  await model?.close();
  rmSync(root, { recursive: true, force: true });
});

async function serverWith(config: Record<string, unknown>): Promise<McpHarness> {
  const file = join(mkdtempSync(join(root, "config-")), "config.json");
  writeFileSync(file, JSON.stringify(config));
  return McpHarness.connect(["--opencode-url", opencode.url, "--directory", opencode.directory, "--config", file]);
}

const finished = (mcp: McpHarness, taskId: string) =>
  mcp.ok<View>("background_output", { task_id: taskId, block: true, timeout_ms: 90_000 });

describe("failure handling against a real opencode server", () => {
  it("shows provider retries, then ends with the provider's error", async () => {
    const mcp = await serverWith({});
    try {
      const task = await mcp.ok<View>("background_task", { agent: "alpha", description: "flaky provider", prompt: "[[error:500]][[retryafter:20]] retry me" });
      const view = await finished(mcp, task.task_id);
      expect(view.status).toBe("error");
      expect(view.error).toMatch(/500/);
      const retries = mcp.logs.filter((l) => l.data.task_id === task.task_id && l.data.event === "task.retrying");
      expect(retries.length).toBeGreaterThanOrEqual(1);
      expect(retries[0]).toMatchObject({ level: "warning", data: { retry: { attempt: 1 } } });
      // opencode made the first request and its retries: more than one model request for this task.
      expect(model.requests.filter((r) => r.firstUserText.includes("retry me")).length).toBeGreaterThan(1);
    } finally {
      await mcp.close();
    }
  });

  it("applies the permission policy: reject, allow, or wait for a human", async () => {
    for (const onAsk of ["reject", "allow", "wait"] as const) {
      const mcp = await serverWith({ permissions: { onAsk } });
      try {
        const task = await mcp.ok<View>("background_task", {
          agent: "alpha",
          description: `permission ${onAsk}`,
          prompt: `[[tool:read:{"filePath":"/etc/hostname"}]][[reply:after ${onAsk}]] perm-${onAsk}`,
        });
        if (onAsk === "wait") {
          const waiting = await waitFor("the waiting permission", async () => {
            const view = await mcp.ok<View>("background_output", { task_id: task.task_id });
            return view.progress.permission?.decision === "waiting" && view;
          });
          expect(waiting.status).toBe("running");
          expect(waiting.progress.permission).toMatchObject({ permission: "external_directory", decision: "waiting" });
          await mcp.ok("background_cancel", { task_id: task.task_id });
          continue;
        }
        const view = await finished(mcp, task.task_id);
        expect(view).toMatchObject({ status: "completed", result: `after ${onAsk}` });
        expect(view.progress.permission).toMatchObject({
          permission: "external_directory",
          decision: onAsk === "allow" ? "allowed" : "rejected",
        });
        const full = await mcp.ok<{ messages: Array<{ type: string; tool?: string; status?: string }> }>("background_output", {
          task_id: task.task_id,
          full: true,
        });
        expect(full.messages.find((m) => m.tool === "read")?.status).toBe(onAsk === "allow" ? "completed" : "error");
      } finally {
        await mcp.close();
      }
    }
  });

  it("continues a session that stops with incomplete todos, then completes with the list", async () => {
    const mcp = await serverWith({ todos: { continuations: 2 } });
    try {
      const todos = JSON.stringify({ todos: [{ content: "write the report", status: "pending", priority: "high" }] });
      const task = await mcp.ok<View>("background_task", {
        agent: "alpha",
        description: "leaves todos",
        prompt: `[[tool:todowrite:${todos}]][[reply:partial work]] todo-run`,
      });
      const view = await finished(mcp, task.task_id);
      expect(view.status).toBe("completed");
      expect(view.progress.todo_continuations).toBe(2);
      expect(view.progress.incomplete_todos).toEqual([{ content: "write the report", status: "pending" }]);
      expect(view.result).toBe("partial work\n\nIncomplete todos:\n- [pending] write the report");
      // One tool step, the first answer, then one answer per continuation.
      expect(model.requests.filter((r) => r.firstUserText.includes("todo-run")).length).toBe(4);
    } finally {
      await mcp.close();
    }
  });

  it("stops a runaway tool loop", async () => {
    const mcp = await serverWith({ limits: { maxRepeatedToolCalls: 3 } });
    try {
      const task = await mcp.ok<View>("background_task", { agent: "alpha", description: "loops", prompt: "[[loop:bash:echo again]] loop-run" });
      const view = await finished(mcp, task.task_id);
      expect(view.status).toBe("error");
      expect(view.error).toMatch(/the same bash call was made 3 times in a row \(limits.maxRepeatedToolCalls\)/);
      const calls = view.progress.tool_calls;
      await new Promise((r) => setTimeout(r, 1_000));
      // The session was aborted: no further tool calls after the guard tripped.
      expect((await mcp.ok<View>("background_output", { task_id: task.task_id })).progress.tool_calls).toBe(calls);
    } finally {
      await mcp.close();
    }
  });

  it("does not hang when opencode is killed and restarted mid-task", async () => {
    const project = writeSandboxProject(mkdtempSync(join(root, "restart-")), model.url);
    const port = await freePort();
    const env = { ...process.env, ...project.env };
    let server = await startEmbeddedOpencode({ directory: project.directory, env, port });
    const mcp = await McpHarness.connect(["--opencode-url", server.url, "--directory", project.directory], {});
    try {
      const task = await mcp.ok<View>("background_task", { agent: "alpha", description: "outlives opencode", prompt: "[[hold:restart]] restart-run" });
      await waitFor("the request at the model", () => model.requests.some((r) => r.firstUserText.includes("restart-run")));
      killOpencodeUnder(server.process.pid!);
      await waitFor("opencode to go away", () => !model.requests.some((r) => r.firstUserText.includes("restart-run") && r.endedAt === undefined));
      server = await startEmbeddedOpencode({ directory: project.directory, env, port });
      const view = await finished(mcp, task.task_id);
      expect(view.status).toBe("error");
      expect(view.error).toMatch(/stopped without finishing an answer|Aborted/);
    } finally {
      model.release("restart");
      await mcp.close();
      await server.stop();
    }
  });

  it("restarts an embedded opencode that dies", async () => {
    const project = writeSandboxProject(mkdtempSync(join(root, "embedded-")), model.url);
    const mcp = await McpHarness.connect(["--directory", project.directory], { ...project.env, BACKGROUND_AGENTS_LOG_LEVEL: "info" });
    try {
      const first = await mcp.ok<View>("background_task", { agent: "alpha", description: "before", prompt: "[[reply:one]] e1" });
      expect((await finished(mcp, first.task_id)).result).toBe("one");
      const guard = Number(/"embedded opencode started".*?"pid":(\d+)/.exec(mcp.stderr)?.[1]);
      killOpencodeUnder(guard);
      await waitFor("the restart", () => mcp.stderr.includes("embedded opencode died and was restarted"), 30_000);
      const second = await waitFor("a launch to succeed again", async () => {
        const result = await mcp.call("background_task", { agent: "alpha", description: "after", prompt: "[[reply:two]] e2" });
        return !result.isError && (result.structuredContent as View);
      });
      expect((await finished(mcp, second.task_id)).result).toBe("two");
    } finally {
      await mcp.close();
    }
  });
});
