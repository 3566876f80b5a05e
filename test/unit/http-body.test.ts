import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { BodyError, readJsonBody } from "../../src/transport/http-body.js";

/** A request stand-in: the body as a stream of chunks, and its headers. */
function request(chunks: string[], headers: Record<string, string> = { "content-type": "application/json" }): IncomingMessage {
  return Object.assign(Readable.from(chunks.map((c) => Buffer.from(c))), { headers }) as unknown as IncomingMessage;
}

async function bodyError(promise: Promise<unknown>): Promise<BodyError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BodyError);
  return error as BodyError;
}

describe("readJsonBody", () => {
  it("parses a JSON body sent in pieces", async () => {
    expect(await readJsonBody(request(['{"a":', "1}"]))).toEqual({ a: 1 });
    expect(await readJsonBody(request(["[1]"], { "content-type": "application/json; charset=utf-8" }))).toEqual([1]);
  });

  it("refuses a body over the limit, by its declared length or as it streams (413)", async () => {
    expect((await bodyError(readJsonBody(request(["{}"], { "content-type": "application/json", "content-length": "100" }), 10))).status).toBe(413);
    const streamed = await bodyError(readJsonBody(request(["[1,", "2,", "3,", "4,", "5]"]), 6));
    expect(streamed.status).toBe(413);
    expect(streamed.message).toMatch(/exceeds 6 bytes/);
  });

  it("refuses another content type (415) and invalid JSON (400, parse error)", async () => {
    expect((await bodyError(readJsonBody(request(["{}"], { "content-type": "text/plain" })))).status).toBe(415);
    expect((await bodyError(readJsonBody(request(["{}"], {})))).status).toBe(415);
    const invalid = await bodyError(readJsonBody(request(["{nope"])));
    expect([invalid.status, invalid.code]).toEqual([400, -32700]);
  });
});
