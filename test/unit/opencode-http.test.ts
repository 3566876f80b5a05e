import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { OpencodeHttpApi } from "../../src/opencode/client.js";

/** A stand-in opencode that holds every health check until told to answer, and counts them in flight. */
class HoldingServer {
  inFlight = 0;
  maxInFlight = 0;
  eventStreams = 0;
  #holding = true;
  readonly #held: http.ServerResponse[] = [];
  readonly #server: http.Server;

  private constructor(server: http.Server) {
    this.#server = server;
  }

  static async start(): Promise<HoldingServer> {
    const server = http.createServer();
    const holding = new HoldingServer(server);
    server.on("request", (req, res) => holding.#handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return holding;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (req.url?.startsWith("/event")) {
      this.eventStreams++;
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(`data: ${JSON.stringify({ type: "server.connected", properties: {} })}\n\n`);
      return;
    }
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.#held.push(res);
    if (!this.#holding) this.answer();
  }

  /** Answers every request, held or still to come. */
  release(): void {
    this.#holding = false;
    this.answer();
  }

  /** Answers the `n` oldest held requests. */
  answer(n = Infinity): void {
    for (const res of this.#held.splice(0, n)) {
      this.inFlight--;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ healthy: true, version: "test" }));
    }
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

async function until(what: string, probe: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Long enough for a request the cap should hold back to reach the server if it were sent. */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 100));

describe("OpencodeHttpApi request cap", () => {
  let server: HoldingServer | undefined;
  afterEach(async () => {
    server?.release();
    await server?.close();
  });

  it("sends at most requestsInFlight requests at once and the rest as answers free their places", async () => {
    server = await HoldingServer.start();
    const api = new OpencodeHttpApi({ url: server.url, directory: "/tmp/project", requestsInFlight: 3 });
    const calls = Array.from({ length: 10 }, () => api.health());
    await until("3 requests at the server", () => server!.inFlight === 3);
    await settle();
    expect(server.inFlight).toBe(3);

    server.answer(2);
    await until("2 more requests at the server", () => server!.inFlight === 3);
    await settle();
    expect(server.inFlight).toBe(3);

    server.release();
    await Promise.all(calls);
    expect(server.maxInFlight).toBe(3);
  });

  it("keeps the event stream outside the cap", async () => {
    server = await HoldingServer.start();
    const api = new OpencodeHttpApi({ url: server.url, directory: "/tmp/project", requestsInFlight: 2 });
    const calls = [api.health(), api.health()];
    await until("the cap full", () => server!.inFlight === 2);

    const stop = new AbortController();
    const stream = await api.events(stop.signal, () => undefined);
    const first = await stream.next();
    expect((first.value as { type: string }).type).toBe("server.connected");
    expect(server.eventStreams).toBe(1);
    stop.abort();

    server.release();
    await Promise.all(calls);
  });
});
