import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { McpHarness, startBackend, waitFor } from "./harness.js";

/** Claude Code's channel notification, as a client registers a handler for it. */
const ChannelNotification = z.object({
  method: z.literal("notifications/claude/channel"),
  params: z.object({ content: z.string(), meta: z.record(z.string(), z.string()).optional() }),
});
type ChannelEvent = z.infer<typeof ChannelNotification>["params"];

type Launched = { task_id: string };

let backend: Awaited<ReturnType<typeof startBackend>>;

beforeAll(async () => {
  backend = await startBackend();
});

afterAll(async () => {
  await backend?.stop();
});

/** A stdio client of the built CLI that records the channel events it gets. */
async function connect(extraArgs: string[]): Promise<{ mcp: McpHarness; events: ChannelEvent[] }> {
  const mcp = await McpHarness.connect(["--opencode-url", backend.opencode.url, "--directory", backend.opencode.directory, ...extraArgs]);
  const events: ChannelEvent[] = [];
  mcp.client.setNotificationHandler(ChannelNotification, (n) => void events.push(n.params));
  return { mcp, events };
}

const completedLog = (mcp: McpHarness, taskId: string) => mcp.logs.some((l) => l.data.task_id === taskId && ["task.completed", "task.error"].includes(l.data.event));

describe("Claude Code channels", () => {
  it("with --claude-channel: declares claude/channel and pushes a channel event naming the task when it ends", async () => {
    const { mcp, events } = await connect(["--claude-channel"]);
    try {
      expect(mcp.client.getServerCapabilities()?.experimental).toEqual({ "claude/channel": {} });
      expect(mcp.client.getInstructions()).toMatch(/<channel> event/);

      const done = await mcp.ok<Launched>("background_task", { agent: "alpha", description: "channel check", prompt: "[[reply:The channel   works.]] go" });
      const event = await waitFor("the channel event", () => events.find((e) => e.meta?.task_id === done.task_id));
      expect(event.meta).toEqual({ task_id: done.task_id, status: "completed", agent: "alpha" });
      const lines = event.content.split("\n");
      expect(lines[0]).toMatch(new RegExp(`^Task ${done.task_id} "channel check" \\(agent alpha\\) completed in [\\d.]+ (ms|s)\\.$`));
      expect(lines[1]).toBe("Preview: The channel works.");
      expect(lines[2]).toBe(`Read the full output with background_output {"task_id": "${done.task_id}"}.`);

      const failed = await mcp.ok<Launched>("background_task", { agent: "alpha", description: "channel failure", prompt: "[[error:400]] fail please" });
      const failure = await waitFor("the failure's channel event", () => events.find((e) => e.meta?.task_id === failed.task_id));
      expect(failure.meta).toMatchObject({ status: "error" });
      expect(failure.content).toMatch(new RegExp(`^Task ${failed.task_id} "channel failure" \\(agent alpha\\) failed after .*400`));
      expect(failure.content).toContain(`background_output {"task_id": "${failed.task_id}"}`);
      // One event per ended task, none for the other status changes.
      expect(events.map((e) => e.meta?.task_id)).toEqual([done.task_id, failed.task_id]);
    } finally {
      await mcp.close();
    }
  });

  it("without it: no capability and no channel event", async () => {
    const { mcp, events } = await connect([]);
    try {
      expect(mcp.client.getServerCapabilities()?.experimental).toBeUndefined();
      expect(mcp.client.getInstructions()).not.toMatch(/<channel>/);
      const task = await mcp.ok<Launched>("background_task", { agent: "alpha", description: "no channel", prompt: "[[reply:quiet]] go" });
      await waitFor("the completed log notification", () => completedLog(mcp, task.task_id));
      // Notifications of one connection arrive in order; give any straggler a moment anyway.
      await new Promise((r) => setTimeout(r, 500));
      expect(events).toEqual([]);
    } finally {
      await mcp.close();
    }
  });

  it("is enabled by notifications.claudeChannel in the config file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bg-channel-"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ notifications: { claudeChannel: true } }));
    const { mcp } = await connect(["--config", join(dir, "config.json")]);
    try {
      expect(mcp.client.getServerCapabilities()?.experimental).toEqual({ "claude/channel": {} });
    } finally {
      await mcp.close();
    }
  });
});
