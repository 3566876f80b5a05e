import type { OpencodeApi, SessionStatus } from "../opencode/client.js";
import { log } from "../log.js";

/** How long an aborted session is watched for a run that starts anyway. */
const WATCH_MS = 5 * 60_000;

interface Watch {
  until: number;
  /** Our abort has reached opencode. */
  sent: boolean;
  retry?: NodeJS.Timeout;
  waiters: Array<() => void>;
}

/**
 * Sessions of ended tasks that must not run. An abort may not reach opencode (it is down: retried with
 * back-off, 1 s doubling to 30 s, and at every resync), or may race a run that is only starting (aborted
 * again when it shows up busy). Until opencode has our abort the session may still be running, so the
 * task's job waits for it (`whenStopped`) before it gives up its agent's slot.
 */
export class StoppedSessions {
  readonly #api: Pick<OpencodeApi, "abort">;
  readonly #watched = new Map<string, Watch>();

  constructor(api: Pick<OpencodeApi, "abort">) {
    this.#api = api;
  }

  get size(): number {
    return this.#watched.size;
  }

  /** Aborts the session and watches it from before the abort is sent. */
  async abort(sessionID: string, attempt = 0): Promise<void> {
    const watch = this.#watch(sessionID);
    clearTimeout(watch.retry);
    try {
      await this.#api.abort(sessionID);
      watch.sent = true;
      for (const wake of watch.waiters.splice(0)) wake();
    } catch (error) {
      log.warn("could not abort a session; will retry when opencode answers", { sessionID, error: String(error) });
      if (Date.now() > watch.until) return;
      watch.retry = setTimeout(() => void this.abort(sessionID, attempt + 1), Math.min(1_000 * 2 ** attempt, 30_000));
      watch.retry.unref?.();
    }
  }

  /** A watched session showed up busy: a run started after our abort. */
  onBusy(sessionID: string): void {
    if (this.#watched.has(sessionID)) void this.abort(sessionID);
  }

  /** With a fresh status map: aborts not yet delivered, or watched sessions running again, are sent again. */
  async resync(busy: Record<string, SessionStatus>, now: number): Promise<void> {
    for (const [sessionID, watch] of this.#watched) {
      if (now > watch.until) this.#end(sessionID, watch);
      else if (!watch.sent || busy[sessionID]) await this.abort(sessionID);
    }
  }

  /** Resolves once our abort has reached opencode (at once if none is pending), or the watch ran out. */
  whenStopped(sessionID: string): Promise<void> {
    const watch = this.#watched.get(sessionID);
    if (!watch || watch.sent) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#end(sessionID, watch), Math.max(0, watch.until - Date.now()));
      timer.unref?.();
      watch.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  #watch(sessionID: string): Watch {
    let watch = this.#watched.get(sessionID);
    if (!watch) {
      watch = { until: 0, sent: false, waiters: [] };
      this.#watched.set(sessionID, watch);
    }
    watch.until = Date.now() + WATCH_MS;
    watch.sent = false;
    return watch;
  }

  #end(sessionID: string, watch: Watch): void {
    clearTimeout(watch.retry);
    this.#watched.delete(sessionID);
    for (const wake of watch.waiters.splice(0)) wake();
  }
}
