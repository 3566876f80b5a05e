import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createOpencodeClient, type Event, type OpencodeClient, type Part } from "@opencode-ai/sdk/v2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ScriptedModel } from "../../dev/model-server.js";
import { startOpencodeSandbox, writeSandboxProject, type OpencodeSandbox } from "../../dev/opencode-sandbox.js";

const TIMEOUT = 60_000;

/** Session id carried by an event, wherever opencode put it. */
function sessionOf(event: Event): string | undefined {
  const props = event.properties as { sessionID?: unknown; info?: { sessionID?: unknown }; part?: { sessionID?: unknown } };
  const id = props.sessionID ?? props.info?.sessionID ?? props.part?.sessionID;
  return typeof id === "string" ? id : undefined;
}

describe("writeSandboxProject", () => {
  it("writes the config and returns only the isolating variables", () => {
    const root = mkdtempSync(path.join(os.tmpdir(), "sandbox-project-test-"));
    try {
      const { directory, env } = writeSandboxProject(root, "http://127.0.0.1:1/v1", { solo: { prompt: "be brief" } });
      expect(directory).toBe(path.join(root, "project"));
      expect(Object.keys(env).sort()).toEqual([
        "OPENCODE_DISABLE_MODELS_FETCH",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_STATE_HOME",
      ]);
      for (const key of ["XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"]) {
        expect(existsSync(env[key] ?? "")).toBe(true);
        expect(env[key]?.startsWith(root)).toBe(true);
      }
      const config = JSON.parse(readFileSync(path.join(directory, "opencode.json"), "utf8")) as {
        provider: { mock: { options: Record<string, unknown> } };
        agent: Record<string, unknown>;
      };
      expect(config.provider.mock.options).toEqual({ baseURL: "http://127.0.0.1:1/v1", apiKey: "x" });
      expect(config.agent).toEqual({
        solo: { mode: "subagent", description: "Sandbox agent solo", model: "mock/mock-model", prompt: "be brief" },
      });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("opencode sandbox", () => {
  let model: ScriptedModel;
  let sandbox: OpencodeSandbox;
  let client: OpencodeClient;
  const events: Event[] = [];
  const listeners = new Set<() => void>();
  const stopEvents = new AbortController();

  beforeAll(async () => {
    model = await ScriptedModel.start();
    const started = performance.now();
    sandbox = await startOpencodeSandbox({ modelUrl: model.url });
    console.info(`opencode sandbox listening after ${Math.round(performance.now() - started)} ms`);
    client = createOpencodeClient({ baseUrl: sandbox.url, directory: sandbox.directory });
    const { stream } = await client.event.subscribe(undefined, { signal: stopEvents.signal, sseMaxRetryAttempts: 1 });
    // The SDK only connects on first iteration, so pump in the background
    // and wait for server.connected before any prompt.
    void (async () => {
      try {
        for await (const event of stream) {
          events.push(event);
          for (const notify of listeners) notify();
        }
      } catch {
        // Aborted at teardown.
      }
    })();
    await waitFor(() => events.some((e) => e.type === "server.connected"));
  }, TIMEOUT);

  afterAll(async () => {
    stopEvents.abort();
    await sandbox?.stop();
    await model?.close();
  }, TIMEOUT);

  function waitFor(check: () => boolean, timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (): void => {
        if (!check()) return;
        listeners.delete(done);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        listeners.delete(done);
        reject(new Error("event not seen in time"));
      }, timeoutMs);
      listeners.add(done);
      done();
    });
  }

  /** Prompts a fresh session and resolves once it reported idle or an error. */
  async function run(text: string, agent = "alpha") {
    const created = await client.session.create({ title: "test" });
    const sessionID = created.data?.id ?? "";
    expect(sessionID).not.toBe("");
    const started = performance.now();
    const response = await client.session.promptAsync({ sessionID, agent, parts: [{ type: "text", text }] });
    expect(response.response.status).toBe(204);
    const ended = (e: Event): boolean =>
      sessionOf(e) === sessionID && (e.type === "session.idle" || e.type === "session.error");
    await waitFor(() => events.some(ended));
    const elapsed = Math.round(performance.now() - started);
    // An error is followed by idle; give it a moment so messages are final.
    await waitFor(() => events.some((e) => sessionOf(e) === sessionID && e.type === "session.idle"), 5_000).catch(
      () => undefined,
    );
    const messages = (await client.session.messages({ sessionID })).data ?? [];
    const mine = events.filter((e) => sessionOf(e) === sessionID);
    return { sessionID, messages, events: mine, elapsed };
  }

  const textOf = (parts: Part[]): string =>
    parts
      .filter((p) => p.type === "text")
      .map((p) => (p.type === "text" ? p.text : ""))
      .join("");

  it("lists the sandbox agents", async () => {
    const agents = (await client.app.agents()).data ?? [];
    const names = agents.map((a) => a.name);
    expect(names).toEqual(expect.arrayContaining(["alpha", "beta"]));
    expect(agents.find((a) => a.name === "alpha")).toMatchObject({ mode: "subagent" });
  });

  it(
    "answers a prompt with the scripted reply",
    async () => {
      const result = await run("[[reply:hello world]]");
      console.info(`first prompt idle after ${result.elapsed} ms`);
      const last = result.messages.at(-1);
      expect(last?.info.role).toBe("assistant");
      expect(last?.info).toMatchObject({ agent: "alpha", providerID: "mock", modelID: "mock-model" });
      expect(textOf(last?.parts ?? [])).toBe("hello world");
      expect(model.sawText("[[reply:hello world]]")).toBe(true);
      const warm = await run("[[reply:again]]");
      console.info(`warm prompt idle after ${warm.elapsed} ms`);
      expect(textOf(warm.messages.at(-1)?.parts ?? [])).toBe("again");
    },
    TIMEOUT,
  );

  it(
    "runs a scripted bash tool call, then answers with text",
    async () => {
      const result = await run("[[tool:bash:echo hi]] [[reply:after tool]]");
      const tools = result.messages.flatMap((m) => m.parts).filter((p) => p.type === "tool");
      expect(tools).toHaveLength(1);
      const tool = tools[0];
      expect(tool?.type === "tool" && tool.tool).toBe("bash");
      expect(tool?.type === "tool" && tool.state.status).toBe("completed");
      expect(tool?.type === "tool" && tool.state.status === "completed" && tool.state.output).toContain("hi");
      expect(textOf(result.messages.at(-1)?.parts ?? [])).toBe("after tool");
      const steps = model.requests.filter((r) => r.firstUserText.includes("after tool"));
      expect(steps).toHaveLength(2);
      expect(steps[0]?.toolNames).toContain("bash");
    },
    TIMEOUT,
  );

  it(
    "reports a provider error as session.error and on the assistant message",
    async () => {
      const result = await run("[[error:400]]");
      const error = result.events.find((e) => e.type === "session.error");
      expect(error?.type === "session.error" && error.properties.error?.name).toBe("APIError");
      const last = result.messages.at(-1)?.info;
      expect(last?.role === "assistant" && last.error?.name).toBe("APIError");
    },
    TIMEOUT,
  );
});
