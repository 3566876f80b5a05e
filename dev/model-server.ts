// A scripted OpenAI-compatible chat-completions server. It stands in for the
// LLM behind a real `opencode serve`, so tests, the demo and benchmarks can
// steer each conversation with markers written into the user prompt.
import { EventEmitter } from "node:events";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { performance } from "node:perf_hooks";

export interface ModelRequestRecord {
  group: string;
  /** Verbatim text of the conversation's first user message (markers kept). */
  firstUserText: string;
  toolNames: string[];
  startedAt: number;
  endedAt?: number;
  /** HTTP status sent; absent when the client went away before headers. */
  status?: number;
  /** True when the client closed the request before the answer was complete. */
  aborted?: boolean;
}

export interface LastChunkInfo {
  group: string;
  firstUserText: string;
  /** performance.timeOrigin + performance.now(), in ms. */
  at: number;
}

interface ChatMessage {
  role?: unknown;
  content?: unknown;
}

interface ChatRequest {
  model?: unknown;
  messages?: unknown;
  tools?: unknown;
}

/** Behaviour parsed from the markers of one conversation. */
interface Script {
  group: string;
  delayMs: number;
  holdKey?: string;
  errorStatus?: number;
  /** A tool call to make once (`[[tool:…]]`) or on every step (`[[loop:…]]`): tool name and JSON arguments. */
  toolCalls: Array<{ name: string; args: string; loop: boolean }>;
  /** `retry-after-ms` header sent with an error, so opencode retries quickly. */
  retryAfterMs?: number;
  reply?: string;
  chunks: number;
}

const TITLE_TEXT = "Background task";
// `[[name:value]]`; `<<name:value>>` is the same marker, for writing one inside another's value
// (e.g. the prompt of a child task inside a parent's tool-call arguments).
const MARKER = /\[\[(\w+):(.*?)\]\]|<<(\w+):(.*?)>>/g;

/** Wall-clock ms with sub-ms resolution, comparable across processes. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  const texts: string[] = [];
  for (const part of content as unknown[]) {
    if (typeof part === "object" && part !== null) {
      const text = (part as { text?: unknown }).text;
      if (typeof text === "string") texts.push(text);
    }
  }
  return texts.join("\n");
}

function parseScript(userTexts: string[]): Script {
  const script: Script = { group: "default", delayMs: 0, chunks: 1, toolCalls: [] };
  // First occurrence wins, so later (e.g. queued) messages cannot override.
  const seen = new Set<string>();
  for (const text of userTexts) {
    for (const match of text.matchAll(MARKER)) {
      const name = match[1] ?? match[3] ?? "";
      const value = match[2] ?? match[4] ?? "";
      if (name === "tool" || name === "loop") {
        // Several tool markers in the first message become parallel calls in one step.
        if (text === userTexts[0]) script.toolCalls.push(parseToolCall(value, name === "loop"));
        continue;
      }
      if (seen.has(name)) continue;
      seen.add(name);
      if (name === "group") script.group = value;
      else if (name === "delay") script.delayMs = Number(value) || 0;
      else if (name === "hold") script.holdKey = value;
      else if (name === "error") script.errorStatus = Number(value) || 500;
      else if (name === "reply") script.reply = value;
      else if (name === "retryafter") script.retryAfterMs = Number(value) || 0;
      else if (name === "chunks") script.chunks = Math.max(1, Math.floor(Number(value)) || 1);
    }
  }
  return script;
}

/**
 * `bash:COMMAND` runs a shell command; `NAME:{json}` calls any tool with those arguments
 * (e.g. `read:{"filePath":"/etc/hostname"}`, `todowrite:{"todos":[…]}`).
 */
function parseToolCall(value: string, loop: boolean): { name: string; args: string; loop: boolean } {
  const colon = value.indexOf(":");
  const name = colon === -1 ? value : value.slice(0, colon);
  const rest = colon === -1 ? "" : value.slice(colon + 1);
  const args = name === "bash" ? JSON.stringify({ command: rest, description: "scripted" }) : rest || "{}";
  return { name, args, loop };
}

function stripMarkers(text: string): string {
  return text.replace(MARKER, "").trim();
}

/** Splits text into n roughly equal, non-empty-where-possible pieces. */
function splitText(text: string, n: number): string[] {
  const size = Math.ceil(text.length / n) || 1;
  const pieces: string[] = [];
  for (let i = 0; i < n; i++) pieces.push(text.slice(i * size, (i + 1) * size));
  return pieces;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class ScriptedModel {
  readonly url: string;
  /** Non-title requests, in arrival order. */
  readonly requests: ModelRequestRecord[] = [];
  titleRequests = 0;

  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  private readonly events = new EventEmitter();
  private readonly current = new Map<string, number>();
  private readonly peak = new Map<string, number>();
  private readonly released = new Set<string>();
  private readonly holders = new Map<string, Set<() => void>>();
  /** Resolvers of every pending wait, so close() can unblock them all. */
  private readonly waiters = new Set<() => void>();
  /** End-bookkeeping of unfinished requests, so close() leaves counters at zero. */
  private readonly finishers = new Set<() => void>();
  /** All user text of each non-title request, for sawText(). */
  private readonly seenTexts: string[] = [];
  private callCounter = 0;
  private closed = false;

  private constructor(server: http.Server, port: number) {
    this.server = server;
    this.url = `http://127.0.0.1:${port}/v1`;
    // Benchmarks may attach many onLastChunk listeners; that is not a leak.
    this.events.setMaxListeners(0);
    server.on("connection", (socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
    server.on("request", (req, res) => {
      this.handle(req, res).catch(() => {
        // A failure mid-response (e.g. socket gone) must not crash the host.
        if (!res.headersSent && !res.destroyed) sendJson(res, 500, {}, { error: { message: "internal", type: "server_error" } });
        else res.destroy();
      });
    });
  }

  static async start(options: { port?: number } = {}): Promise<ScriptedModel> {
    const server = http.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port ?? 0, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    return new ScriptedModel(server, (server.address() as AddressInfo).port);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const wake of this.waiters) wake();
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    for (const finish of this.finishers) finish();
    await done;
  }

  /** Answers every current and future request holding on `key`. */
  release(key: string): void {
    this.released.add(key);
    const waiting = this.holders.get(key);
    this.holders.delete(key);
    for (const wake of waiting ?? []) wake();
  }

  inFlight(group: string): number {
    return this.current.get(group) ?? 0;
  }

  maxInFlight(group: string): number {
    return this.peak.get(group) ?? 0;
  }

  sawText(substring: string): boolean {
    return this.seenTexts.some((text) => text.includes(substring));
  }

  onLastChunk(cb: (info: LastChunkInfo) => void): () => void {
    this.events.on("lastChunk", cb);
    return () => this.events.off("lastChunk", cb);
  }

  /** Clears records and counters; in-flight requests still count as in flight. */
  resetStats(): void {
    this.requests.length = 0;
    this.seenTexts.length = 0;
    this.titleRequests = 0;
    this.peak.clear();
    for (const [group, n] of this.current) if (n > 0) this.peak.set(group, n);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? "").split("?")[0];
    if (req.method !== "POST" || path !== "/v1/chat/completions") {
      req.resume();
      sendJson(res, 404, {}, { error: { message: "not found", type: "invalid_request_error" } });
      return;
    }
    let body: ChatRequest;
    try {
      body = JSON.parse(await readBody(req)) as ChatRequest;
    } catch {
      sendJson(res, 400, {}, { error: { message: "invalid JSON body", type: "invalid_request_error" } });
      return;
    }
    const messages = (Array.isArray(body.messages) ? body.messages : []) as ChatMessage[];
    const tools = Array.isArray(body.tools) ? (body.tools as unknown[]) : [];
    const model = typeof body.model === "string" ? body.model : "mock-model";

    if (tools.length === 0) {
      // Title generation: never scripted and never counted as work.
      this.titleRequests++;
      await this.streamText(res, model, [TITLE_TEXT]);
      return;
    }

    const userTexts = messages.filter((m) => m.role === "user").map((m) => textOf(m.content));
    const firstUserText = userTexts[0] ?? "";
    const script = parseScript(userTexts);
    const record: ModelRequestRecord = {
      group: script.group,
      firstUserText,
      toolNames: tools.map(toolName),
      startedAt: nowMs(),
    };
    this.requests.push(record);
    this.seenTexts.push(userTexts.join("\n"));
    this.enter(script.group);

    let ended = false;
    const finish = (): void => {
      if (ended) return;
      ended = true;
      this.finishers.delete(finish);
      record.endedAt = nowMs();
      if (!res.writableFinished) record.aborted = true;
      this.current.set(script.group, this.inFlight(script.group) - 1);
    };
    // "close" fires both after a normal end and when the client goes away.
    res.on("close", finish);
    this.finishers.add(finish);
    // The client may have gone while the body was read, before we listened.
    if (res.destroyed || req.socket.destroyed) finish();
    const gone = (): boolean => this.closed || res.destroyed || ended;

    if (script.delayMs > 0) {
      await this.wait(res, (wake) => {
        const timer = setTimeout(wake, script.delayMs);
        return () => clearTimeout(timer);
      });
    }
    if (gone()) return;
    const holdKey = script.holdKey;
    if (holdKey !== undefined && !this.released.has(holdKey)) {
      await this.wait(res, (wake) => {
        const set = this.holders.get(holdKey) ?? new Set<() => void>();
        set.add(wake);
        this.holders.set(holdKey, set);
        return () => set.delete(wake);
      });
    }
    if (gone()) return;

    if (script.errorStatus !== undefined) {
      const status = script.errorStatus;
      record.status = status;
      sendJson(res, status, script.retryAfterMs === undefined ? {} : { "retry-after-ms": String(script.retryAfterMs) }, {
        error: { message: `scripted error ${status}`, type: status >= 500 ? "server_error" : "invalid_request_error" },
      });
      return;
    }

    record.status = 200;
    const hasToolResult = messages.some((m) => m.role === "tool");
    const calls = script.toolCalls.filter((call) => call.loop || !hasToolResult);
    if (calls.length > 0) {
      await this.streamToolCalls(res, model, calls);
      return;
    }
    const text = script.reply ?? `done: ${stripMarkers(firstUserText).slice(0, 40)}`;
    await this.streamText(res, model, splitText(text, script.chunks), () => {
      const info: LastChunkInfo = { group: script.group, firstUserText, at: nowMs() };
      this.events.emit("lastChunk", info);
    });
  }

  private enter(group: string): void {
    const n = this.inFlight(group) + 1;
    this.current.set(group, n);
    if (n > this.maxInFlight(group)) this.peak.set(group, n);
  }

  /**
   * Waits until `arm`'s trigger calls wake, the client closes, or the server
   * closes; then runs the cleanup `arm` returned (clear timer, drop holder).
   */
  private wait(res: http.ServerResponse, arm: (wake: () => void) => () => void): Promise<void> {
    return new Promise<void>((resolve) => {
      let done = false;
      let cleanup: () => void = () => undefined;
      const wake = (): void => {
        if (done) return;
        done = true;
        this.waiters.delete(wake);
        res.off("close", wake);
        cleanup();
        resolve();
      };
      this.waiters.add(wake);
      res.on("close", wake);
      cleanup = arm(wake);
    });
  }

  private async streamText(
    res: http.ServerResponse,
    model: string,
    pieces: string[],
    afterLast?: () => void,
  ): Promise<void> {
    const stream = new ChunkWriter(res, model);
    stream.open();
    stream.send({ index: 0, delta: { role: "assistant", content: "" } });
    for (let i = 0; i < pieces.length; i++) {
      if (i > 0) await sleep(5);
      if (res.destroyed) return;
      stream.send({ index: 0, delta: { content: pieces[i] }, finish_reason: null });
    }
    afterLast?.();
    stream.finish("stop");
  }

  private async streamToolCalls(res: http.ServerResponse, model: string, calls: Array<{ name: string; args: string }>): Promise<void> {
    const stream = new ChunkWriter(res, model);
    stream.open();
    stream.send({ index: 0, delta: { role: "assistant", content: "" } });
    for (const [index, { name, args }] of calls.entries()) {
      const id = `call_${++this.callCounter}`;
      stream.send({ index: 0, delta: { tool_calls: [{ index, id, type: "function", function: { name, arguments: "" } }] } });
      // Two argument fragments, so the client has to concatenate like with a real model.
      const half = Math.ceil(args.length / 2);
      for (const part of [args.slice(0, half), args.slice(half)]) {
        await sleep(1);
        if (res.destroyed) return;
        stream.send({ index: 0, delta: { tool_calls: [{ index, function: { arguments: part } }] } });
      }
    }
    stream.finish("tool_calls");
  }

}

/** Writes OpenAI `chat.completion.chunk` SSE frames. */
class ChunkWriter {
  private readonly id = `chatcmpl-${Math.random().toString(36).slice(2, 10)}`;
  private readonly created = Math.floor(Date.now() / 1000);

  constructor(
    private readonly res: http.ServerResponse,
    private readonly model: string,
  ) {}

  open(): void {
    this.res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
    });
  }

  send(choice: Record<string, unknown>): void {
    this.frame({ choices: [choice] });
  }

  finish(reason: "stop" | "tool_calls"): void {
    if (this.res.destroyed) return;
    this.send({ index: 0, delta: {}, finish_reason: reason });
    this.frame({ choices: [], usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 } });
    this.res.end("data: [DONE]\n\n");
  }

  private frame(payload: Record<string, unknown>): void {
    if (this.res.destroyed) return;
    const chunk = { id: this.id, object: "chat.completion.chunk", created: this.created, model: this.model, ...payload };
    this.res.write(`data: ${JSON.stringify(chunk)}\n\n`);
  }
}

function toolName(tool: unknown): string {
  if (typeof tool !== "object" || tool === null) return "";
  const fn = (tool as { function?: { name?: unknown } }).function;
  return typeof fn?.name === "string" ? fn.name : "";
}

function sendJson(res: http.ServerResponse, status: number, headers: Record<string, string>, body: unknown): void {
  if (res.destroyed) return;
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}
