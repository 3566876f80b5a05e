import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ScriptedModel } from "../../dev/model-server.js";

interface Chunk {
  choices: Array<{
    index: number;
    delta: {
      role?: string;
      content?: string;
      tool_calls?: Array<{ index: number; id?: string; type?: string; function: { name?: string; arguments: string } }>;
    };
    finish_reason?: string | null;
  }>;
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

const BASH_TOOL = { type: "function", function: { name: "bash", parameters: { type: "object" } } };

type Message = { role: string; content: unknown; tool_call_id?: string };

function chat(model: ScriptedModel, messages: Message[], options: { tools?: unknown[]; signal?: AbortSignal } = {}) {
  return fetch(`${model.url}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "mock-model",
      messages,
      stream: true,
      stream_options: { include_usage: true },
      tools: options.tools ?? [BASH_TOOL],
    }),
    signal: options.signal,
  });
}

/** Splits an SSE body into its data payloads, checking the framing on the way. */
async function frames(response: Response): Promise<{ chunks: Chunk[]; last: string }> {
  const body = await response.text();
  expect(body.endsWith("\n\n")).toBe(true);
  const payloads = body
    .split("\n\n")
    .filter((frame) => frame !== "")
    .map((frame) => {
      expect(frame.startsWith("data: ")).toBe(true);
      return frame.slice("data: ".length);
    });
  const last = payloads.pop() ?? "";
  return { chunks: payloads.map((p) => JSON.parse(p) as Chunk), last };
}

function textOf(chunks: Chunk[]): string {
  return chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
}

const user = (content: unknown): Message => ({ role: "user", content });

describe("ScriptedModel", () => {
  let model: ScriptedModel;
  beforeEach(async () => {
    model = await ScriptedModel.start();
  });
  afterEach(async () => {
    await model.close();
  });

  it("streams a text answer in the OpenAI chunk format", async () => {
    const response = await chat(model, [{ role: "system", content: "sys" }, user("[[reply:hello world]]")]);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream");
    const { chunks, last } = await frames(response);
    expect(last).toBe("[DONE]");
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: "assistant", content: "" });
    expect(textOf(chunks)).toBe("hello world");
    const stop = chunks.at(-2);
    expect(stop?.choices[0]).toMatchObject({ delta: {}, finish_reason: "stop" });
    const usage = chunks.at(-1);
    expect(usage?.choices).toEqual([]);
    expect(usage?.usage).toEqual({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 });
    expect(model.requests).toHaveLength(1);
    expect(model.requests[0]).toMatchObject({ group: "default", status: 200, toolNames: ["bash"] });
    expect(model.requests[0]?.endedAt).toBeGreaterThanOrEqual(model.requests[0]?.startedAt ?? Infinity);
  });

  it("defaults the reply to the first user text without markers, and splits chunks", async () => {
    const prompt = [{ type: "text", text: "[[chunks:3]] Please summarise the repository layout in detail" }];
    const { chunks } = await frames(await chat(model, [user(prompt)]));
    const content = chunks.filter((c) => (c.choices[0]?.delta.content ?? "") !== "");
    expect(content).toHaveLength(3);
    expect(textOf(chunks)).toBe("done: " + "Please summarise the repository layout in detail".slice(0, 40));
  });

  it("fires onLastChunk for text answers only", async () => {
    const seen: string[] = [];
    const off = model.onLastChunk((info) => seen.push(`${info.group}:${info.firstUserText}`));
    const before = performance.timeOrigin + performance.now();
    await (await chat(model, [user("[[group:g1]] [[reply:x]]")])).text();
    await (await chat(model, [user("[[tool:bash:ls]]")])).text();
    off();
    await (await chat(model, [user("[[reply:y]]")])).text();
    expect(seen).toEqual(["g1:[[group:g1]] [[reply:x]]"]);
    expect(before).toBeLessThan(performance.timeOrigin + performance.now());
  });

  it("answers a bash tool call until a tool result is in the history", async () => {
    const first = await frames(await chat(model, [user("run it [[tool:bash:echo hi]]")]));
    const calls = first.chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    expect(calls[0]).toMatchObject({ index: 0, type: "function", function: { name: "bash", arguments: "" } });
    const id = calls[0]?.id ?? "";
    expect(id).toMatch(/^call_\d+$/);
    expect(JSON.parse(calls.map((c) => c.function.arguments).join(""))).toEqual({
      command: "echo hi",
      description: "scripted",
    });
    expect(first.chunks.at(-2)?.choices[0]?.finish_reason).toBe("tool_calls");

    const second = await frames(
      await chat(model, [
        user("run it [[tool:bash:echo hi]] [[reply:ran]]"),
        { role: "assistant", content: "", tool_calls: [] } as Message,
        { role: "tool", tool_call_id: id, content: "hi\n" },
      ]),
    );
    expect(textOf(second.chunks)).toBe("ran");
    expect(second.chunks.at(-2)?.choices[0]?.finish_reason).toBe("stop");
  });

  it("answers scripted errors with the requested status", async () => {
    const bad = await chat(model, [user("[[error:400]]")]);
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: { message: "scripted error 400", type: "invalid_request_error" } });
    const down = await chat(model, [user("[[error:503]]")]);
    expect(down.status).toBe(503);
    expect(await down.json()).toEqual({ error: { message: "scripted error 503", type: "server_error" } });
    expect(model.requests.map((r) => r.status)).toEqual([400, 503]);
  });

  it("returns 404 JSON for anything but chat completions", async () => {
    const models = await fetch(`${model.url}/models`);
    expect(models.status).toBe(404);
    expect(await models.json()).toMatchObject({ error: { message: "not found" } });
    expect((await fetch(`${model.url}/chat/completions`)).status).toBe(404);
    expect(model.requests).toHaveLength(0);
  });

  it("answers title requests (no tools) with plain text and keeps them out of the stats", async () => {
    const response = await chat(model, [user("Generate a title for this conversation:\n[[hold:x]] [[group:t]]")], {
      tools: [],
    });
    expect(textOf((await frames(response)).chunks)).toBe("Background task");
    expect(model.titleRequests).toBe(1);
    expect(model.requests).toHaveLength(0);
    expect(model.maxInFlight("t")).toBe(0);
    expect(model.sawText("Generate a title")).toBe(false);
  });

  it("delays each request before sending headers", async () => {
    const started = Date.now();
    const response = await chat(model, [user("[[delay:150]] [[reply:late]]")]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(textOf((await frames(response)).chunks)).toBe("late");
  });

  it("holds requests until released, counting concurrency per group", async () => {
    const pending = [1, 2, 3].map((n) => chat(model, [user(`task ${n} [[group:q]] [[hold:k]] [[reply:r${n}]]`)]));
    const other = chat(model, [user("[[group:other]] [[reply:free]]")]);
    expect(textOf((await frames(await other)).chunks)).toBe("free");
    await until(() => model.inFlight("q") === 3);
    expect(model.maxInFlight("q")).toBe(3);
    expect(model.maxInFlight("other")).toBe(1);
    expect(model.sawText("task 2")).toBe(true);
    expect(model.sawText("task 9")).toBe(false);

    model.release("k");
    const texts = await Promise.all(pending.map(async (p) => textOf((await frames(await p)).chunks)));
    expect(texts).toEqual(["r1", "r2", "r3"]);
    expect(model.inFlight("q")).toBe(0);
    // A released key no longer holds later requests.
    expect(textOf((await frames(await chat(model, [user("[[hold:k]] [[reply:again]]")]))).chunks)).toBe("again");

    model.resetStats();
    expect(model.requests).toHaveLength(0);
    expect(model.maxInFlight("q")).toBe(0);
    expect(model.sawText("task 2")).toBe(false);
  });

  it("finds markers in earlier user messages after a tool message", async () => {
    const response = await chat(model, [
      user("[[group:deep]] [[reply:from first]]"),
      { role: "tool", tool_call_id: "call_1", content: "out" },
    ]);
    expect(textOf((await frames(response)).chunks)).toBe("from first");
    expect(model.requests[0]?.group).toBe("deep");
  });

  it("counts a client abort during a hold as ended", async () => {
    const controller = new AbortController();
    const held = chat(model, [user("[[group:a]] [[hold:never]]")], { signal: controller.signal });
    await until(() => model.inFlight("a") === 1);
    controller.abort();
    await expect(held).rejects.toThrow();
    await until(() => model.inFlight("a") === 0);
    expect(model.requests[0]?.endedAt).toBeDefined();
    expect(model.requests[0]?.aborted).toBe(true);
    expect(model.requests[0]?.status).toBeUndefined();
    model.release("never");
  });

  it("closes while requests are held", async () => {
    const held = chat(model, [user("[[hold:forever]]")]);
    await until(() => model.inFlight("default") === 1);
    await model.close();
    await expect(held).rejects.toThrow();
    expect(model.inFlight("default")).toBe(0);
  });
});

async function until(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
