// The bench's own subscription to opencode's event stream. It timestamps (a) when opencode announces that
// a session went idle, which splits a completion's latency into opencode's share and the server's, and
// (b) when a parent session's prompt naming a finished task is stored: what the model that launched the
// task will see, the end of the "push" path, measured at opencode rather than trusted from the server.
import { createOpencodeClient, type Event } from "@opencode-ai/sdk/v2";
import { nowMs } from "../dev/model-server.js";

// Both servers name the task in the prompt: ours "bg_<12 hex>", the seed "bg_<8 hex>".
const TASK_ID = /\bbg_[0-9a-f]{8,12}\b/;

export class OpencodeTap {
  readonly #parents = new Set<string>();
  /** messageID -> when opencode announced the (user) message in a parent session. */
  readonly #messageSeen = new Map<string, number>();
  readonly #stored = new Map<string, number>();
  /** sessionID -> the first session.idle (or status idle) event. */
  readonly #idle = new Map<string, number>();
  readonly #waiters = new Map<string, Array<(at: number) => void>>();
  readonly #stop = new AbortController();

  private constructor() {}

  static async start(url: string, directory: string): Promise<OpencodeTap> {
    const tap = new OpencodeTap();
    const client = createOpencodeClient({ baseUrl: url, directory });
    const { stream } = await client.event.subscribe(undefined, { signal: tap.#stop.signal, sseDefaultRetryDelay: 250 });
    const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Event>;
    // The SDK connects on the first read: wait for server.connected so no parent prompt can be missed.
    const first = await iterator.next();
    if (first.done || first.value.type !== "server.connected") throw new Error("opencode's event stream did not start with server.connected");
    void (async () => {
      try {
        for (let next = await iterator.next(); !next.done; next = await iterator.next()) tap.#onEvent(next.value);
      } catch (error) {
        if (!tap.#stop.signal.aborted) console.error("bench: opencode event stream failed:", error);
      }
    })();
    return tap;
  }

  /** Only prompts into sessions registered here count (child sessions also hold user text). */
  watch(parentSessionID: string): void {
    this.#parents.add(parentSessionID);
  }

  /** When the prompt naming `taskId` was stored in its parent (nowMs clock). */
  stored(taskId: string, timeoutMs = 60_000): Promise<number> {
    const known = this.#stored.get(taskId);
    if (known !== undefined) return Promise.resolve(known);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no parent prompt naming ${taskId} within ${timeoutMs} ms`)), timeoutMs);
      const list = this.#waiters.get(taskId) ?? [];
      list.push((at) => {
        clearTimeout(timer);
        resolve(at);
      });
      this.#waiters.set(taskId, list);
    });
  }

  /** When opencode first announced `sessionID` idle, if it has. */
  idleAt(sessionID: string): number | undefined {
    return this.#idle.get(sessionID);
  }

  stop(): void {
    this.#stop.abort();
  }

  #onEvent(event: Event): void {
    const at = nowMs();
    if (event.type === "session.idle" || (event.type === "session.status" && event.properties.status.type === "idle")) {
      const { sessionID } = event.properties;
      if (!this.#idle.has(sessionID)) this.#idle.set(sessionID, at);
      return;
    }
    if (event.type === "message.updated") {
      const { info } = event.properties;
      if (info.role === "user" && this.#parents.has(info.sessionID) && !this.#messageSeen.has(info.id)) this.#messageSeen.set(info.id, at);
      return;
    }
    if (event.type !== "message.part.updated") return;
    const { part } = event.properties;
    if (part.type !== "text" || !this.#parents.has(part.sessionID)) return;
    const taskId = TASK_ID.exec(part.text)?.[0];
    if (!taskId || this.#stored.has(taskId)) return;
    // The message record and its text part are announced back to back; the first of the two is "stored".
    const storedAt = Math.min(this.#messageSeen.get(part.messageID) ?? at, at);
    this.#stored.set(taskId, storedAt);
    for (const resolve of this.#waiters.get(taskId) ?? []) resolve(storedAt);
    this.#waiters.delete(taskId);
  }
}
