import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ScriptedModel } from "../../dev/model-server.js";
import { startOpencodeSandbox, type OpencodeSandbox } from "../../dev/opencode-sandbox.js";
import { freePort } from "../../src/opencode/embedded.js";
import { CLI, McpHarness, waitFor } from "./harness.js";

let model: ScriptedModel;
let opencode: OpencodeSandbox;

beforeAll(async () => {
  model = await ScriptedModel.start();
  // opencode itself runs this server as an MCP server named "bg" (pointing nowhere: only its tools matter
  // here), so opencode's sessions are offered bg_background_task and friends.
  const nowhere = `http://127.0.0.1:${await freePort()}`;
  opencode = await startOpencodeSandbox({
    modelUrl: model.url,
    overrides: {
      mcp: {
        bg: {
          type: "local",
          command: [process.execPath, CLI, "--opencode-url", nowhere, "--data-dir", mkdtempSync(join(tmpdir(), "bg-inner-"))],
          enabled: true,
        },
      },
    },
  });
});
afterAll(async () => {
  await opencode?.stop();
  await model?.close();
});

it("never offers a background session opencode's task tool, nor this server's tools at the deepest level", async () => {
  const sdk = createOpencodeClient({ baseUrl: opencode.url, directory: opencode.directory });
  await waitFor("opencode to connect to the bg MCP server", async () => {
    const status = (await sdk.mcp.status()).data as Record<string, { status: string }> | undefined;
    return status?.bg?.status === "connected";
  });
  // A plain session of the same agent sees them all: the baseline.
  const plain = (await sdk.session.create({ title: "plain" })).data!;
  await sdk.session.prompt({ sessionID: plain.id, agent: "alpha", parts: [{ type: "text", text: "[[reply:hi]] plain-session" }] });
  const baseline = model.requests.find((r) => r.firstUserText.includes("plain-session"))!;
  expect(baseline.toolNames).toEqual(expect.arrayContaining(["task", "bg_background_task", "bg_background_output", "bg_background_cancel"]));

  // At the deepest allowed level (limits.maxDepth 1: only launches from outside) the session is offered
  // neither; below it (the default, 3) it may launch background tasks of its own, but never `task`.
  for (const maxDepth of [1, 3]) {
    const config = join(mkdtempSync(join(tmpdir(), "bg-depth-")), "config.json");
    writeFileSync(config, JSON.stringify({ limits: { maxDepth } }));
    const mcp = await McpHarness.connect(["--opencode-url", opencode.url, "--directory", opencode.directory, "--config", config]);
    try {
      const marker = `bg-session-depth-${maxDepth}`;
      const task = await mcp.ok<{ task_id: string }>("background_task", { agent: "alpha", description: "depth", prompt: `[[reply:ok]] ${marker}` });
      await mcp.ok("background_output", { task_id: task.task_id, block: true, timeout_ms: 60_000 });
      const request = model.requests.find((r) => r.firstUserText.includes(marker))!;
      expect(request.toolNames).toContain("bash");
      expect(request.toolNames).not.toContain("task");
      const ours = request.toolNames.filter((t) => t.includes("background_"));
      expect(ours).toEqual(maxDepth === 1 ? [] : expect.arrayContaining(["bg_background_task", "bg_background_output", "bg_background_cancel"]));
    } finally {
      await mcp.close();
    }
  }
});
