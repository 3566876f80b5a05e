import type { SessionMessage } from "./client.js";
import { ABORTED_ERROR, errorText } from "./session-signal.js";

/** How a session's run ended, read from its stored messages. */
export type Outcome =
  | { kind: "pending" }
  | { kind: "completed"; text: string }
  | { kind: "error"; message: string; aborted: boolean };

/**
 * The run is over when the last assistant message is finished: with an error, or completed and not
 * waiting for a tool round ("tool-calls" means another step follows).
 */
export function outcomeOf(messages: SessionMessage[]): Outcome {
  const assistants = messages.filter((m) => m.info.role === "assistant");
  const last = assistants.at(-1);
  if (!last || last.info.role !== "assistant") return { kind: "pending" };
  const info = last.info;
  if (info.error) return { kind: "error", message: errorText(info.error), aborted: info.error.name === ABORTED_ERROR };
  if (info.time.completed === undefined || info.finish === "tool-calls") return { kind: "pending" };
  // The final step may carry no text (a tool-only step); the answer is then the latest text written.
  const text = [...assistants].reverse().map(textOf).find((t) => t.length > 0) ?? "";
  return { kind: "completed", text };
}

export function textOf(message: SessionMessage): string {
  return message.parts
    .flatMap((p) => (p.type === "text" && !p.synthetic && !p.ignored ? [p.text] : []))
    .join("\n")
    .trim();
}

export interface TranscriptEntry {
  role: "user" | "assistant";
  type: "text" | "tool";
  text?: string;
  tool?: string;
  status?: string;
  input?: string;
  output?: string;
}

export interface TranscriptLimits {
  /** Longest text kept per entry, in characters. */
  maxText: number;
  /** Longest tool input/output kept per entry, in characters. */
  maxToolIo: number;
  /** Total characters kept; the oldest entries go first. */
  maxTotal: number;
}

export const DEFAULT_TRANSCRIPT_LIMITS: TranscriptLimits = { maxText: 8_000, maxToolIo: 2_000, maxTotal: 100_000 };

/** User/assistant text and tool calls with their status, bounded in size (the newest entries kept). */
export function toTranscript(
  messages: SessionMessage[],
  limits: TranscriptLimits = DEFAULT_TRANSCRIPT_LIMITS,
): { entries: TranscriptEntry[]; omitted: number } {
  const all: TranscriptEntry[] = [];
  for (const { info, parts } of messages) {
    for (const part of parts) {
      if (part.type === "text" && !part.synthetic && part.text.trim()) {
        all.push({ role: info.role, type: "text", text: clip(part.text, limits.maxText) });
      } else if (part.type === "tool") {
        const { state } = part;
        const output = state.status === "completed" ? state.output : state.status === "error" ? state.error : undefined;
        all.push({
          role: info.role,
          type: "tool",
          tool: part.tool,
          status: state.status,
          input: clip(JSON.stringify(state.input ?? {}), limits.maxToolIo),
          ...(output === undefined ? {} : { output: clip(output, limits.maxToolIo) }),
        });
      }
    }
    if (info.role === "assistant" && info.error) {
      all.push({ role: "assistant", type: "text", text: `[error] ${errorText(info.error)}` });
    }
  }
  let total = 0;
  let keepFrom = all.length;
  while (keepFrom > 0) {
    const size = JSON.stringify(all[keepFrom - 1]).length;
    if (total + size > limits.maxTotal) break;
    total += size;
    keepFrom--;
  }
  return { entries: all.slice(keepFrom), omitted: keepFrom };
}

/** Keeps head and tail of a long text, with a marker saying how much was cut. */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const keep = Math.max(0, max - 40);
  const head = Math.ceil(keep / 2);
  const tail = keep - head;
  return `${text.slice(0, head)}\n[… ${text.length - keep} characters cut …]\n${text.slice(text.length - tail)}`;
}
