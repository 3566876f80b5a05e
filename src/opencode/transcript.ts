import type { SessionMessage } from "./client.js";
import { errorText, isAnswerText, stepError } from "./session-signal.js";

/** How a session's run ended, read from its stored messages or from its streamed events. */
export type Outcome =
  | { kind: "pending" }
  | { kind: "completed"; text: string }
  | { kind: "error"; message: string; aborted: boolean };

/**
 * An assistant message (one LLM step) as far as the outcome goes. Stored messages (`stepsOf`) and the
 * event stream (`StreamedAnswer`) both produce these, so the outcome is decided in one place.
 */
export interface Step {
  id: string;
  /** `time.completed` is set. */
  completed: boolean;
  /** "tool-calls" means another step follows. */
  finish: string | null;
  error: { message: string; aborted: boolean } | null;
  /** Its answer text (`answerText` of its answer text parts). */
  text: string;
}

/** The assistant steps of stored messages, in order. */
export function stepsOf(messages: SessionMessage[]): Step[] {
  return messages.flatMap((message) => {
    const { info } = message;
    if (info.role !== "assistant") return [];
    return [
      {
        id: info.id,
        completed: info.time.completed !== undefined,
        finish: info.finish ?? null,
        error: info.error ? stepError(info.error) : null,
        text: textOf(message),
      },
    ];
  });
}

export function outcomeOf(messages: SessionMessage[]): Outcome {
  return outcomeOfSteps(stepsOf(messages));
}

/**
 * The run is over when the last assistant step is finished: with an error, or completed and not
 * waiting for a tool round.
 */
export function outcomeOfSteps(steps: Step[]): Outcome {
  const last = steps.at(-1);
  if (!last) return { kind: "pending" };
  if (last.error) return { kind: "error", ...last.error };
  if (!last.completed || last.finish === "tool-calls") return { kind: "pending" };
  // The final step may carry no text (a tool-only step); the answer is then the latest text written.
  return { kind: "completed", text: steps.findLast((s) => s.text.length > 0)?.text ?? "" };
}

export function textOf(message: SessionMessage): string {
  return answerText(message.parts.flatMap((p) => (isAnswerText(p) ? [p.text] : [])));
}

/** A step's answer: its answer text parts joined by line, trimmed. */
export function answerText(texts: Iterable<string>): string {
  return [...texts].join("\n").trim();
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
