// A reverse proxy that counts the HTTP requests an MCP server sends to opencode, measured from outside the
// server so that the figure does not depend on the server counting itself honestly.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { nowMs } from "../dev/model-server.js";

export interface ProxiedRequest {
  /** "GET /session/:id/message": ids and the query string are dropped so that requests group by route. */
  route: string;
  /** The session named in the path, if any (e.g. the one a prompt_async is for). */
  sessionID?: string;
  /** The `sample:<id>` tag in the request body (bench titles and prompts carry one), if any. */
  sample?: string;
  /** Arrival at the proxy, and the end of opencode's answer there (nowMs clock). */
  at: number;
  endedAt?: number;
}

const SESSION_IN_PATH = /\/session\/(ses_[A-Za-z0-9]+)/;
const SAMPLE_IN_BODY = /sample:([A-Za-z0-9_.-]+)/;

// opencode ids are a prefix and an underscore (ses_, msg_, prt_, per_, ...); each is one path segment.
const ID_SEGMENT = /\/[a-z]{2,4}_[A-Za-z0-9]{6,}(?=\/|$)/g;

export function routeOf(method: string | undefined, url: string | undefined): string {
  const path = (url ?? "/").split("?")[0]!.replace(ID_SEGMENT, "/:id");
  return `${method ?? "GET"} ${path}`;
}

export class CountingProxy {
  readonly url: string;
  readonly requests: ProxiedRequest[];
  readonly #server: http.Server;
  readonly #agent: http.Agent;

  private constructor(server: http.Server, agent: http.Agent, requests: ProxiedRequest[]) {
    this.#server = server;
    this.#agent = agent;
    this.requests = requests;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  static async start(target: string): Promise<CountingProxy> {
    const upstream = new URL(target);
    // Keep-alive with no socket cap: the proxy must not queue requests that the server sent concurrently.
    const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
    const requests: ProxiedRequest[] = [];
    const server = http.createServer((req, res) => {
      const record: ProxiedRequest = { route: routeOf(req.method, req.url), at: nowMs() };
      const sessionID = SESSION_IN_PATH.exec(req.url ?? "")?.[1];
      if (sessionID) record.sessionID = sessionID;
      requests.push(record);
      let body = "";
      req.on("data", (chunk: Buffer) => {
        if (body.length < 4_096) body += chunk.toString();
      });
      req.on("end", () => {
        const sample = SAMPLE_IN_BODY.exec(body)?.[1];
        if (sample) record.sample = sample;
      });
      const out = http.request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: upstream.host },
          agent,
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          // Send headers now: an SSE response has no body until the first event, and the client waits on them.
          res.flushHeaders();
          // pipe() forwards each chunk as it arrives, so the /event stream is not buffered.
          answer.pipe(res);
          answer.on("end", () => (record.endedAt = nowMs()));
        },
      );
      out.on("error", () => {
        if (!res.headersSent) res.writeHead(502).end();
        else res.destroy();
      });
      // The client went away (e.g. it closed its event stream): close the upstream request too.
      res.on("close", () => out.destroy());
      req.pipe(out);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return new CountingProxy(server, agent, requests);
  }

  /** Requests that arrived in [from, to), counted per route. */
  countBetween(from: number, to: number): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const r of this.requests) {
      if (r.at >= from && r.at < to) counts[r.route] = (counts[r.route] ?? 0) + 1;
    }
    return counts;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#agent.destroy();
  }
}
