import { createOpencodeClient, type OpencodeClient } from "@opencode-ai/sdk/v2";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ScriptedModel } from "../../dev/model-server.js";
import { startOpencodeSandbox, type OpencodeSandbox } from "../../dev/opencode-sandbox.js";
import { freePort } from "../../src/opencode/embedded.js";
import { CLI, waitFor } from "./harness.js";

// opencode itself is the MCP client here: its opencode.json runs this server (as "bg") attached to the
// same opencode, and the scripted model makes a parent session call bg_background_task.
let model: ScriptedModel;
let opencode: OpencodeSandbox;
let sdk: OpencodeClient;

beforeAll(async () => {
  model = await ScriptedModel.start();
  const port = await freePort();
  opencode = await startOpencodeSandbox({
    modelUrl: model.url,
    port,
    overrides: {
      mcp: {
        bg: {
          type: "local",
          command: [process.execPath, CLI, "--opencode-url", `http://127.0.0.1:${port}`, "--data-dir", mkdtempSync(join(tmpdir(), "bg-oc-"))],
          enabled: true,
          timeout: 60_000,
        },
      },
    },
  });
  sdk = createOpencodeClient({ baseUrl: opencode.url, directory: opencode.directory });
  await waitFor("opencode to connect to the bg MCP server", async () => {
    const status = (await sdk.mcp.status()).data as Record<string, { status: string }> | undefined;
    return status?.bg?.status === "connected";
  }, 60_000);
});
afterAll(async () => {
  await opencode?.stop();
  await model?.close();
});

const call = (args: Record<string, string>) => `[[tool:bg_background_task:${JSON.stringify(args)}]]`;

async function userTexts(sessionID: string): Promise<string[]> {
  const messages = (await sdk.session.messages({ sessionID })).data!;
  return messages.filter((m) => m.info.role === "user").map((m) => m.parts.map((p) => (p.type === "text" ? p.text : "")).join(""));
}

async function assistantCount(sessionID: string): Promise<number> {
  return (await sdk.session.messages({ sessionID })).data!.filter((m) => m.info.role === "assistant").length;
}

describe("opencode as the MCP client", () => {
  it("finds the calling session as the parent and prompts it when the task ends", async () => {
    const parent = (await sdk.session.create({ title: "parent" })).data!;
    await sdk.session.promptAsync({
      sessionID: parent.id,
      agent: "alpha",
      parts: [{ type: "text", text: `${call({ description: "child one", prompt: "<<reply:child one done>> c1", agent: "beta" })} oc-parent-1` }],
    });
    const children = await waitFor("the child session", async () => {
      const list = (await sdk.session.children({ sessionID: parent.id })).data!;
      return list.length === 1 && list;
    });
    expect(children[0]!.parentID).toBe(parent.id);
    const wake = await waitFor("the completion prompt in the parent", async () =>
      (await userTexts(parent.id)).find((t) => t.startsWith("[BACKGROUND TASK COMPLETED]")),
    );
    expect(wake).toMatch(/"child one" \(agent beta\) completed in .*Preview: child one done/s);
  });

  it("records the first of two parallel tasks silently and wakes the parent once with both", async () => {
    const parent = (await sdk.session.create({ title: "batch parent" })).data!;
    const quick = call({ description: "quick child", prompt: "<<reply:quick result>> q", agent: "beta" });
    const slow = call({ description: "slow child", prompt: "<<delay:2000>><<reply:slow result>> s", agent: "beta" });
    await sdk.session.promptAsync({ sessionID: parent.id, agent: "alpha", parts: [{ type: "text", text: `${quick}${slow} oc-parent-2` }] });

    const texts = await waitFor("the wake-up", async () => {
      const all = await userTexts(parent.id);
      return all.some((t) => t.includes("All 2 background tasks of this batch have ended")) && all;
    }, 60_000);
    const notices = texts.filter((t) => t.startsWith("[BACKGROUND TASK"));
    expect(notices).toHaveLength(2);
    expect(notices[0]).toMatch(/"quick child".*still running: you will be prompted once/s);
    expect(notices[1]).toMatch(/"slow child".*All 2 background tasks.*"quick child".*quick result.*"slow child".*slow result/s);
    // Both keep the parent's agent (alpha, not opencode's default), learnt from the event stream.
    const agents = (await sdk.session.messages({ sessionID: parent.id })).data!.map((m) => m.info.role === "user" && m.info.agent);
    expect(agents.filter((agent) => agent !== false)).toEqual(["alpha", "alpha", "alpha"]);
    // One model turn for the first prompt (tool step + answer), then exactly one for the wake-up.
    await waitFor("the parent's turn on the wake-up", async () => (await assistantCount(parent.id)) >= 3);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await assistantCount(parent.id)).toBe(3);
  });
});
