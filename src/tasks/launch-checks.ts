import type { OpencodeApi, OpencodeEvent } from "../opencode/client.js";
import type { EventWatcher } from "../opencode/event-watcher.js";
import { log } from "../log.js";

/** The agent list is fetched again this often in the background (and at once when a launch names one it lacks). */
const AGENTS_REFRESH_MS = 60_000;
/** Sessions remembered from the event stream, for parent checks; the least recently seen are forgotten first. */
const MAX_SEEN_SESSIONS = 10_000;

/**
 * What a launch checks against opencode, answered locally so that a launch does not wait on a busy
 * opencode: the agent list (kept, refreshed in the background and on a miss), whether opencode is up
 * (the event stream's state), and the sessions that exist (seen on the event stream). Only what is not
 * known locally costs a round trip.
 */
export class LaunchChecks {
  readonly #api: OpencodeApi;
  readonly #events: EventWatcher;
  #agents: string[] | null = null;
  /** The refresh in flight: concurrent misses share it. */
  #refreshing: Promise<string[]> | null = null;
  #timer: NodeJS.Timeout | undefined;
  /** Insertion order is recency (a Map keeps it), so the oldest is dropped first. */
  readonly #sessions = new Map<string, true>();

  constructor(api: OpencodeApi, events: EventWatcher) {
    this.#api = api;
    this.#events = events;
    events.on("event", (event) => this.#onEvent(event));
    events.on("connected", (reconnect) => {
      if (!reconnect) return;
      // Events were missed (opencode may have restarted, with other agents and without some sessions).
      this.#sessions.clear();
      void this.#refreshQuietly();
    });
  }

  start(): void {
    void this.#refreshQuietly();
    this.#timer = setInterval(() => void this.#refreshQuietly(), AGENTS_REFRESH_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /**
   * Rejects when opencode is down: with the stream connected that is known locally; while it is not
   * (starting, or reconnecting after opencode restarted) one health check decides, and its error names the URL.
   */
  async reachable(): Promise<void> {
    if (!this.#events.connected) await this.#api.health();
  }

  /** The (visible) agents, fetched again first when `name` is not among them: one fetch for concurrent misses. */
  async agentsFor(name: string): Promise<readonly string[]> {
    if (this.#agents?.includes(name)) return this.#agents;
    return this.#refresh();
  }

  /** Whether the session exists: seen on the event stream, else asked of opencode. */
  async sessionExists(sessionID: string): Promise<boolean> {
    if (this.#sessions.has(sessionID)) return true;
    const exists = await this.#api.sessionExists(sessionID);
    if (exists) this.#remember(sessionID);
    return exists;
  }

  #onEvent(event: OpencodeEvent): void {
    if (event.type === "session.created" || event.type === "session.updated") this.#remember(event.properties.info.id);
    else if (event.type === "session.deleted") this.#sessions.delete(event.properties.info.id);
  }

  #remember(sessionID: string): void {
    this.#sessions.delete(sessionID);
    this.#sessions.set(sessionID, true);
    if (this.#sessions.size > MAX_SEEN_SESSIONS) this.#sessions.delete(this.#sessions.keys().next().value!);
  }

  #refresh(): Promise<string[]> {
    this.#refreshing ??= this.#api
      .agents()
      .then((agents) => (this.#agents = agents.filter((a) => !a.hidden).map((a) => a.name)))
      .finally(() => (this.#refreshing = null));
    return this.#refreshing;
  }

  async #refreshQuietly(): Promise<void> {
    try {
      await this.#refresh();
    } catch (error) {
      log.debug("could not refresh the agent list", { error: String(error) });
    }
  }
}
