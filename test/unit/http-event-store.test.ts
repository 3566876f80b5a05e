import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { describe, expect, it } from "vitest";
import { BoundedEventStore, STANDALONE_STREAM_ID } from "../../src/transport/event-store.js";

const note = (n: number): JSONRPCMessage => ({ jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data: n } });

const dataOf = ([, message]: [string, JSONRPCMessage]): number => (message as unknown as { params: { data: number } }).params.data;

async function replay(store: BoundedEventStore, after: string): Promise<Array<[string, JSONRPCMessage]>> {
  const sent: Array<[string, JSONRPCMessage]> = [];
  await store.replayEventsAfter(after, { send: async (id, message) => void sent.push([id, message]) });
  return sent;
}

describe("BoundedEventStore", () => {
  it("numbers events monotonically and replays a stream's later events in order, even within one millisecond", async () => {
    const store = new BoundedEventStore(undefined, () => 1_000);
    const first = await store.storeEvent("a", note(1));
    const ids = [await store.storeEvent("a", note(2)), await store.storeEvent("b", note(3)), await store.storeEvent("a", note(4))];
    expect([first, ...ids].map((id) => Number(id.split("_")[0]))).toEqual([1, 2, 3, 4]);
    const sent = await replay(store, first);
    expect(sent.map(dataOf)).toEqual([2, 4]);
    expect(await store.replayEventsAfter(first, { send: async () => undefined })).toBe("a");
  });

  it("keeps no message for a priming event but still resumes after its id", async () => {
    const store = new BoundedEventStore();
    const priming = await store.storeEvent("s", {} as JSONRPCMessage);
    await store.storeEvent("s", note(1));
    expect(store.size).toBe(1);
    expect((await replay(store, priming)).length).toBe(1);
  });

  it("names the stream of an id it issued, even after the event was dropped, and refuses others", async () => {
    const store = new BoundedEventStore({ maxEvents: 1, maxAgeMs: 60_000, maxBytes: 1_000_000 });
    const old = await store.storeEvent("_GET_stream", note(1));
    await store.storeEvent("_GET_stream", note(2));
    expect(await store.getStreamIdForEventId(old)).toBe("_GET_stream");
    expect(await store.getStreamIdForEventId("99_x")).toBeUndefined();
    expect(await store.getStreamIdForEventId("garbage")).toBeUndefined();
    await expect(replay(store, "garbage")).rejects.toThrow(/Unknown event id/);
  });

  it("is bounded by count, age and bytes, dropping the oldest first", async () => {
    let now = 0;
    const byCount = new BoundedEventStore({ maxEvents: 3, maxAgeMs: 1_000_000, maxBytes: 1_000_000 }, () => now);
    const start = await byCount.storeEvent("s", note(0));
    for (let n = 1; n <= 5; n++) await byCount.storeEvent("s", note(n));
    expect(byCount.size).toBe(3);
    expect((await replay(byCount, start)).map(dataOf)).toEqual([3, 4, 5]);

    const byAge = new BoundedEventStore({ maxEvents: 100, maxAgeMs: 1_000, maxBytes: 1_000_000 }, () => now);
    const from = await byAge.storeEvent("s", note(0));
    now = 500;
    await byAge.storeEvent("s", note(1));
    now = 1_200;
    await byAge.storeEvent("s", note(2));
    expect(byAge.size).toBe(2);
    now = 1_600;
    expect((await replay(byAge, from)).map(dataOf)).toEqual([2]);

    const one = Buffer.byteLength(JSON.stringify(note(1)));
    const byBytes = new BoundedEventStore({ maxEvents: 100, maxAgeMs: 1_000_000, maxBytes: one * 2 }, () => now);
    for (let n = 1; n <= 4; n++) await byBytes.storeEvent("s", note(n));
    expect(byBytes.size).toBe(2);
  });

  it("tells where to resume a GET stream from when notifications were sent while none was open", async () => {
    const store = new BoundedEventStore();
    expect(store.undeliveredResumeId()).toBeUndefined();
    const missed = await store.storeEvent(STANDALONE_STREAM_ID, note(1));
    await store.storeEvent(STANDALONE_STREAM_ID, note(2));
    await store.storeEvent("a-post-stream", note(3));
    const resumeFrom = store.undeliveredResumeId()!;
    expect((await replay(store, resumeFrom)).map(([id]) => id)).toEqual([missed, `2_${STANDALONE_STREAM_ID}`]);

    store.streamOpened();
    expect(store.undeliveredResumeId()).toBeUndefined();
    await store.storeEvent(STANDALONE_STREAM_ID, note(4));
    expect(store.undeliveredResumeId()).toBeUndefined();
    store.streamClosed();
    const next = await store.storeEvent(STANDALONE_STREAM_ID, note(5));
    expect(Number(store.undeliveredResumeId()!.split("_")[0])).toBe(Number(next.split("_")[0]) - 1);
  });
});
