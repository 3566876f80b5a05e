import type { OpencodeEvent } from "./client.js";

export type OurTool = "background_task" | "background_output" | "background_cancel";

/** Which opencode session is making a call to one of our tools, as far as the event stream shows. */
export type CallerDetection =
  | { kind: "found"; sessionID: string }
  | { kind: "ambiguous"; sessionIDs: string[] }
  | { kind: "none" };

interface RunningCall {
  sessionID: string;
  tool: string;
  input: Record<string, unknown>;
  at: number;
}

const OUR_TOOL = /(?:^|_)(background_task|background_output|background_cancel)$/;
/** A call stays a candidate while it runs, up to this long (a blocking background_output can take 10 min). */
const MAX_CALL_MS = 15 * 60_000;

/**
 * opencode, as an MCP client, sends no session id with a tool call. Its event stream, though, shows the
 * calling session's tool part (`<server>_background_task`, state running, with the arguments) while the
 * call is in flight. Matching the call's arguments against those parts names the caller.
 */
export class CallerDetector {
  readonly #running = new Map<string, RunningCall>();
  #waiters = new Set<() => void>();

  onEvent(event: OpencodeEvent): void {
    if (event.type !== "message.part.updated") return;
    const { part } = event.properties;
    if (part.type !== "tool" || !OUR_TOOL.test(part.tool)) return;
    if (part.state.status === "running") {
      this.#running.set(part.callID, { sessionID: part.sessionID, tool: part.tool, input: part.state.input, at: Date.now() });
      for (const wake of this.#waiters) wake();
    } else if (part.state.status !== "pending") {
      this.#running.delete(part.callID);
    }
  }

  /**
   * The session whose running call to `tool` has these arguments. When the MCP call arrives before the
   * event, waits up to `waitMs` for it.
   */
  async detect(tool: OurTool, args: Record<string, unknown>, waitMs = 1_500): Promise<CallerDetection> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const found = this.#match(tool, args);
      if (found.kind !== "none" || Date.now() >= deadline) return found;
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          this.#waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, deadline - Date.now());
        this.#waiters.add(wake);
      });
    }
  }

  #match(tool: OurTool, args: Record<string, unknown>): CallerDetection {
    const sessions = new Set<string>();
    for (const [callID, call] of this.#running) {
      if (Date.now() - call.at > MAX_CALL_MS) {
        this.#running.delete(callID);
        continue;
      }
      if (call.tool.endsWith(tool) && sameArguments(call.input, args)) sessions.add(call.sessionID);
    }
    if (sessions.size === 1) return { kind: "found", sessionID: [...sessions][0]! };
    if (sessions.size > 1) return { kind: "ambiguous", sessionIDs: [...sessions] };
    return { kind: "none" };
  }
}

/** What the model sent equals what reached us (our schemas trim strings and fill defaults, so compare what it sent). */
function sameArguments(sent: Record<string, unknown>, received: Record<string, unknown>): boolean {
  return Object.entries(sent).every(([key, value]) => normalize(value) === normalize(received[key]));
}

function normalize(value: unknown): string {
  return JSON.stringify(typeof value === "string" ? value.trim() : value) ?? "undefined";
}
