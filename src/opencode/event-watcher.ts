import { EventEmitter } from "node:events";
import type { OpencodeApi, OpencodeEvent } from "./client.js";
import { log } from "../log.js";

/** No event for this long while connected (opencode's heartbeat comes every 10 s): the stream is dead. */
const QUIET_CONNECTED_MS = 25_000;
/** No answer for this long while connecting (the SDK retries at least every 5 s): the attempt hangs. */
const QUIET_CONNECTING_MS = 8_000;

/**
 * `event`: every event but `server.connected`. `connected`: every `server.connected`; `reconnect` is true
 * after the first, when events may have been missed.
 */
export interface EventWatcherEvents {
  event: [OpencodeEvent];
  connected: [reconnect: boolean];
}

/**
 * The single subscription to opencode's event stream for the whole server. The stream connects on first
 * iteration and does not replay what was missed, so `ready()` resolves only once `server.connected` has
 * been seen, and every later connection is reported as a reconnect so that listeners can resync.
 * Listeners subscribe before `start()`.
 */
export class EventWatcher extends EventEmitter<EventWatcherEvents> {
  readonly #api: OpencodeApi;
  readonly #stop = new AbortController();
  #connections = 0;
  #connected = false;
  #waiters: Array<() => void> = [];
  /** Aborts the current subscription attempt when opencode has been silent too long (see #heard). */
  #quiet = new AbortController();
  #silence: NodeJS.Timeout | undefined;

  constructor(api: OpencodeApi) {
    super();
    this.#api = api;
  }

  get connected(): boolean {
    return this.#connected;
  }

  start(): void {
    void this.#loop();
  }

  stop(): void {
    clearTimeout(this.#silence);
    this.#stop.abort();
    this.#connected = false;
  }

  /** Resolves once the stream is connected (at once when it already is), or rejects after `timeoutMs`. */
  ready(timeoutMs = 15_000): Promise<void> {
    if (this.#connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== done);
        reject(new Error(`opencode's event stream at ${this.#api.url} did not connect within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.#waiters.push(done);
    });
  }

  async #loop(): Promise<void> {
    let delay = 250;
    while (!this.#stop.signal.aborted) {
      // One subscription attempt, given up when opencode goes quiet: a server that is starting up can accept
      // the connection and never answer, and the SDK's own retries would then wait forever.
      const attempt = AbortSignal.any([this.#stop.signal, this.#quiet.signal]);
      this.#heard();
      try {
        const stream = await this.#api.events(attempt, (error) => {
          this.#heard();
          this.#lost(error);
        });
        for await (const event of stream) {
          delay = 250;
          if (event.type === "server.connected") this.#onConnected();
          else this.#dispatch(event);
          this.#heard();
        }
      } catch (error) {
        this.#lost(error);
      }
      clearTimeout(this.#silence);
      if (this.#stop.signal.aborted) break;
      this.#connected = false;
      await new Promise((resolve) => setTimeout(resolve, delay).unref());
      delay = Math.min(delay * 2, 5_000);
    }
  }

  /**
   * opencode said something (an event, or a failed retry): restart the silence timer. Connected, opencode
   * sends a heartbeat every 10 s; connecting, the SDK retries at least every 5 s.
   */
  #heard(): void {
    clearTimeout(this.#silence);
    if (this.#quiet.signal.aborted) this.#quiet = new AbortController();
    const quiet = this.#quiet;
    this.#silence = setTimeout(() => {
      log.warn("opencode's event stream went quiet; subscribing again", { url: this.#api.url, connected: this.#connected });
      quiet.abort();
    }, this.#connected ? QUIET_CONNECTED_MS : QUIET_CONNECTING_MS);
    this.#silence.unref();
  }

  #onConnected(): void {
    this.#connected = true;
    this.#connections++;
    if (this.#connections > 1) log.info("opencode event stream reconnected", { url: this.#api.url });
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
    this.emit("connected", this.#connections > 1);
  }

  #dispatch(event: OpencodeEvent): void {
    try {
      this.emit("event", event);
    } catch (error) {
      log.error("event handler failed", { type: event.type, error: String(error) });
    }
  }

  #lost(error: unknown): void {
    if (this.#stop.signal.aborted) return;
    if (this.#connected) log.warn("opencode event stream lost; reconnecting", { url: this.#api.url, error: String(error) });
    this.#connected = false;
  }
}
