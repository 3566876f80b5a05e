import type { EventStore } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";

export interface EventStoreLimits {
  /** At most this many events are kept (oldest dropped first). */
  maxEvents: number;
  /** Events older than this are dropped. */
  maxAgeMs: number;
  /** At most this many bytes of serialized messages are kept (oldest dropped first). */
  maxBytes: number;
}

/** The SDK's id for a session's standalone (GET) stream. */
export const STANDALONE_STREAM_ID = "_GET_stream";

/** Per session: the last 1000 events, at most 10 minutes old, at most 4 MiB. */
export const DEFAULT_EVENT_LIMITS: EventStoreLimits = { maxEvents: 1_000, maxAgeMs: 10 * 60_000, maxBytes: 4 * 1024 * 1024 };

interface StoredEvent {
  seq: number;
  streamId: string;
  message: JSONRPCMessage;
  at: number;
  bytes: number;
}

/**
 * The replay buffer behind `Last-Event-ID` for one HTTP session: what the server sent on each SSE stream
 * (the GET stream's notifications, and each POST's progress and result), so a client whose stream
 * broke can resume where it left off.
 *
 * Event ids are `<seq>_<streamId>` with `seq` increasing by one per event, so order is exact even within
 * a millisecond, and an id names its stream even after its event was dropped. The store is bounded by
 * count, age and bytes; a client that resumes after its events were dropped gets what is still kept (it
 * should re-read task state with background_output or resources/list).
 *
 * It also covers a gap the SDK leaves: the GET stream gets no priming event, so a client that never
 * received anything on it has no id to resume from. The store notes notifications sent while no GET
 * stream was open; `undeliveredResumeId` gives the id to replay them from when the next one opens.
 */
export class BoundedEventStore implements EventStore {
  readonly #limits: EventStoreLimits;
  readonly #now: () => number;
  /** Ascending by seq. */
  readonly #events: StoredEvent[] = [];
  #bytes = 0;
  #seq = 0;
  #standaloneOpen = 0;
  /** The first GET-stream event stored while no GET stream was open, since one last opened. */
  #undeliveredFrom: number | undefined;

  constructor(limits: EventStoreLimits = DEFAULT_EVENT_LIMITS, now: () => number = Date.now) {
    this.#limits = limits;
    this.#now = now;
  }

  get size(): number {
    return this.#events.length;
  }

  async storeEvent(streamId: string, message: JSONRPCMessage): Promise<string> {
    const seq = ++this.#seq;
    if (streamId === STANDALONE_STREAM_ID && this.#standaloneOpen === 0) this.#undeliveredFrom ??= seq;
    // A stream's priming event is an id with no message: nothing to replay, so nothing to keep.
    if (Object.keys(message).length > 0) {
      const bytes = Buffer.byteLength(JSON.stringify(message), "utf8");
      this.#events.push({ seq, streamId, message, at: this.#now(), bytes });
      this.#bytes += bytes;
    }
    this.#evict();
    return eventId(seq, streamId);
  }

  /** A GET stream request starts (`streamClosed` when its response ends). */
  streamOpened(): void {
    this.#standaloneOpen++;
    this.#undeliveredFrom = undefined;
  }

  streamClosed(): void {
    this.#standaloneOpen = Math.max(0, this.#standaloneOpen - 1);
  }

  /** For a GET without Last-Event-ID: the id after which the notifications no stream carried begin. */
  undeliveredResumeId(): string | undefined {
    return this.#undeliveredFrom === undefined ? undefined : eventId(this.#undeliveredFrom - 1, STANDALONE_STREAM_ID);
  }

  async getStreamIdForEventId(id: string): Promise<string | undefined> {
    const parsed = parseEventId(id);
    return parsed && parsed.seq <= this.#seq ? parsed.streamId : undefined;
  }

  async replayEventsAfter(lastEventId: string, { send }: { send: (eventId: string, message: JSONRPCMessage) => Promise<void> }): Promise<string> {
    const last = parseEventId(lastEventId);
    if (!last || last.seq > this.#seq) throw new Error(`Unknown event id "${lastEventId}"`);
    this.#evict();
    for (const event of this.#events) {
      if (event.seq > last.seq && event.streamId === last.streamId) await send(eventId(event.seq, event.streamId), event.message);
    }
    return last.streamId;
  }

  #evict(): void {
    const { maxEvents, maxAgeMs, maxBytes } = this.#limits;
    const expired = this.#now() - maxAgeMs;
    let drop = 0;
    let bytes = this.#bytes;
    while (drop < this.#events.length) {
      const event = this.#events[drop]!;
      const over = this.#events.length - drop > maxEvents || bytes > maxBytes || event.at < expired;
      if (!over) break;
      bytes -= event.bytes;
      drop++;
    }
    if (drop > 0) {
      this.#events.splice(0, drop);
      this.#bytes = bytes;
    }
  }
}

function eventId(seq: number, streamId: string): string {
  return `${seq}_${streamId}`;
}

function parseEventId(id: string): { seq: number; streamId: string } | undefined {
  const match = /^(\d{1,15})_(.+)$/s.exec(id);
  return match ? { seq: Number(match[1]), streamId: match[2]! } : undefined;
}
