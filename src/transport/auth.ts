import { createHash, timingSafeEqual } from "node:crypto";

/** Who a request speaks for, or why it may not speak at all. */
export type AuthResult =
  | { ok: true; owner: string }
  /** `missing`: no credentials at all (RFC 6750 then names no error code); else the RFC 6750 error code. */
  | { ok: false; error: "missing" | "invalid_request" | "invalid_token"; description: string };

/** The auth seam of the HTTP transport: an `Authorization` header in, an owner (or a refusal) out. */
export interface Authenticator {
  authenticate(authorization: string | undefined): AuthResult;
}

/** Everyone is the one owner: for loopback servers without tokens. */
export class NoAuth implements Authenticator {
  constructor(private readonly owner: string) {}

  authenticate(): AuthResult {
    return { ok: true, owner: this.owner };
  }
}

/**
 * Static bearer tokens, one per owner. Tokens are compared as SHA-256 digests with `timingSafeEqual`,
 * against every configured token each time, so neither the match nor its position leaks through timing.
 */
export class BearerTokens implements Authenticator {
  readonly #digests: Array<{ owner: string; digest: Buffer }>;

  constructor(tokens: Record<string, string>) {
    this.#digests = Object.entries(tokens).map(([owner, token]) => ({ owner, digest: sha256(token) }));
    if (this.#digests.length === 0) throw new Error("BearerTokens needs at least one token");
  }

  authenticate(authorization: string | undefined): AuthResult {
    if (!authorization) {
      return { ok: false, error: "missing", description: "Missing bearer token: send the header Authorization: Bearer <token>" };
    }
    const match = /^Bearer +(\S+) *$/i.exec(authorization);
    if (!match) return { ok: false, error: "invalid_request", description: "The Authorization header must be Bearer <token>" };
    const presented = sha256(match[1]!);
    let owner: string | undefined;
    for (const entry of this.#digests) {
      if (timingSafeEqual(presented, entry.digest)) owner = entry.owner;
    }
    return owner === undefined ? { ok: false, error: "invalid_token", description: "The bearer token is not valid" } : { ok: true, owner };
  }
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}
