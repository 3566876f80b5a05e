import { OpencodeRequestError, type OpencodeApi, type SessionStatus } from "../opencode/client.js";
import { log } from "../log.js";

/** How long an aborted session is watched for a run that starts anyway. */
const WATCH_MS = 5 * 60_000;

interface Watch {
  until: number;
  /** Deleted rather than aborted: it never got a prompt, so nothing of it is worth keeping. */
  discard: boolean;
  /** Our abort (or delete) has reached opencode. */
  sent: boolean;
  retry?: NodeJS.Timeout;
  waiters: Array<() => void>;
}

/**
 * Sessions of ended tasks that must not run. An abort may not reach opencode (it is down: retried with
 * back-off, 1 s doubling to 30 s, and at every resync), or may race a run that is only starting (aborted
 * again when it shows up busy). Until opencode has our abort the session may still be running, so the
 * task's job waits for it (`whenStopped`) before it gives up its agent's slot. A session whose task ended
 * before it was prompted is deleted instead (`discard`), with the same retries, so that none is left behind.
 */
export class StoppedSessions {
  readonly #api: OpencodeApi;
  readonly #watched = new Map<string, Watch>();

  constructor(api: OpencodeApi) {
    this.#api = api;
  }

  get size(): number {
    return this.#watched.size;
  }

  /** Aborts the session and watches it from before the abort is sent. */
  abort(sessionID: string): Promise<void> {
    return this.#send(sessionID, false);
  }

  /** Deletes a session that never got a prompt; retried like an abort until opencode has it. */
  discard(sessionID: string): Promise<void> {
    return this.#send(sessionID, true);
  }

  async #send(sessionID: string, discard: boolean, attempt = 0): Promise<void> {
    const watch = this.#watch(sessionID, discard);
    clearTimeout(watch.retry);
    try {
      await (watch.discard ? this.#delete(sessionID) : this.#api.abort(sessionID));
      watch.sent = true;
      for (const wake of watch.waiters.splice(0)) wake();
      if (watch.discard) this.#end(sessionID, watch); // a deleted session cannot run again
    } catch (error) {
      log.warn(`could not ${watch.discard ? "delete" : "abort"} a session; will retry when opencode answers`, { sessionID, error: String(error) });
      if (Date.now() > watch.until) return;
      watch.retry = setTimeout(() => void this.#send(sessionID, watch.discard, attempt + 1), Math.min(1_000 * 2 ** attempt, 30_000));
      watch.retry.unref?.();
    }
  }

  /** Deleted already (404) is deleted. */
  async #delete(sessionID: string): Promise<void> {
    try {
      await this.#api.deleteSession(sessionID);
    } catch (error) {
      if (!(error instanceof OpencodeRequestError && error.status === 404)) throw error;
    }
  }

  /** A watched session showed up busy: a run started after our abort. */
  onBusy(sessionID: string): void {
    const watch = this.#watched.get(sessionID);
    if (watch) void this.#send(sessionID, watch.discard);
  }

  /** With a fresh status map: aborts not yet delivered, or watched sessions running again, are sent again. */
  async resync(busy: Record<string, SessionStatus>, now: number): Promise<void> {
    for (const [sessionID, watch] of this.#watched) {
      if (now > watch.until) this.#end(sessionID, watch);
      else if (!watch.sent || busy[sessionID]) await this.#send(sessionID, watch.discard);
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

  #watch(sessionID: string, discard: boolean): Watch {
    let watch = this.#watched.get(sessionID);
    if (!watch) {
      watch = { until: 0, discard, sent: false, waiters: [] };
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
