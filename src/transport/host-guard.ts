import type { IncomingHttpHeaders } from "node:http";

const LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]"];

/**
 * DNS-rebinding protection for a server on a loopback address: a web page whose name resolves to
 * 127.0.0.1 still sends its own name as Host (and its own origin as Origin), so both must name this
 * machine. Ports are not compared: what matters is the name the browser thinks it is talking to.
 */
export class LoopbackHostGuard {
  readonly #allowed: Set<string>;

  /** `bindHost`: the loopback address listened on, allowed too (e.g. 127.0.0.2). */
  constructor(bindHost: string) {
    const bound = bindHost.includes(":") && !bindHost.startsWith("[") ? `[${bindHost}]` : bindHost;
    this.#allowed = new Set([...LOOPBACK_NAMES, bound.toLowerCase()]);
  }

  /** Why the request is refused, or undefined when its Host and Origin are local. */
  check(headers: IncomingHttpHeaders): string | undefined {
    const host = headers.host;
    if (!host) return "Missing Host header";
    const hostname = hostnameOf(`http://${host}`);
    if (hostname === undefined || !this.#allowed.has(hostname)) return `Invalid Host: ${host} (this server answers only to localhost, 127.0.0.1 or [::1])`;
    const origin = headers.origin;
    if (origin !== undefined) {
      const originHost = hostnameOf(origin);
      if (originHost === undefined || !this.#allowed.has(originHost)) return `Invalid Origin: ${origin} (only local origins may call this server)`;
    }
    return undefined;
  }
}

function hostnameOf(url: string): string | undefined {
  try {
    return new URL(url).hostname.toLowerCase();
  } catch {
    return undefined;
  }
}
