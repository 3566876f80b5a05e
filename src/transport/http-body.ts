import type { IncomingMessage } from "node:http";

/** Largest accepted POST body: a 1 MB prompt fits even with heavy JSON escaping. */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** Why a POST body was refused: the HTTP status and a message naming the problem. */
export class BodyError extends Error {
  override name = "BodyError";
  constructor(
    readonly status: 400 | 413 | 415,
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Reads a JSON POST body of at most `limit` bytes. Refuses (BodyError) a content type other than
 * application/json (415), a body over the limit (413, without reading the rest), and invalid JSON (400).
 */
export async function readJsonBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json") {
    throw new BodyError(415, -32000, `Unsupported Media Type: Content-Type must be application/json (got "${req.headers["content-type"] ?? ""}")`);
  }
  const tooLarge = () => new BodyError(413, -32000, `Payload Too Large: the request body exceeds ${limit} bytes`);
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  const text = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= limit) return void chunks.push(chunk);
      // Stop reading: the caller answers 413 and closes the connection.
      req.off("data", onData);
      req.pause();
      reject(tooLarge());
    };
    req.on("data", onData);
    req.once("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.once("error", reject);
  });
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new BodyError(400, -32700, "Parse error: the request body is not valid JSON");
  }
}
