import type { OpencodeEvent, Part } from "./client.js";

/**
 * What an opencode event means for a session we follow, as a typed value. Everything the task logic
 * reacts to is one of these; every other event maps to null.
 */
export type SessionSignal =
  /** The session is working (or retrying): our prompt has been taken up. */
  | { kind: "busy"; retry?: { attempt: number; message: string; next: number } }
  | { kind: "idle" }
  | { kind: "error"; name: string; message: string }
  | { kind: "deleted" }
  /** A user message was written (our prompt, or one opencode injects): a run starts. */
  | { kind: "user"; messageID: string }
  /** An assistant message (one LLM step) was written or updated; `finish` "tool-calls" means another step follows. */
  | {
      kind: "assistant";
      messageID: string;
      completed: boolean;
      finish: string | null;
      error: { message: string; aborted: boolean } | null;
    }
  /** `input` is the call's arguments as JSON once known (from the running state on). */
  | { kind: "tool"; callID: string; tool: string; status: string; input: string | null }
  /** An answer text part (see isAnswerText), with its full text so far; it may be empty. */
  | { kind: "text"; messageID: string; partID: string; text: string }
  | { kind: "todos"; todos: Array<{ content: string; status: string }> }
  /** The session waits for a permission decision (it blocks until someone replies). */
  | { kind: "permission"; requestID: string; permission: string; patterns: string[] }
  | { kind: "permission-replied"; requestID: string; reply: string };

export interface RoutedSignal {
  sessionID: string;
  signal: SessionSignal;
}

/** The session an event shows working (busy or retrying), if any: the `busy` signal without the rest. */
export function busySessionOf(event: OpencodeEvent): string | null {
  return event.type === "session.status" && event.properties.status.type !== "idle" ? event.properties.sessionID : null;
}

export function toSignal(event: OpencodeEvent): RoutedSignal | null {
  switch (event.type) {
    case "session.status": {
      const { sessionID, status } = event.properties;
      if (status.type === "idle") return { sessionID, signal: { kind: "idle" } };
      if (status.type === "retry") {
        const { attempt, message, next } = status;
        return { sessionID, signal: { kind: "busy", retry: { attempt, message, next } } };
      }
      return { sessionID, signal: { kind: "busy" } };
    }
    case "session.idle":
      return { sessionID: event.properties.sessionID, signal: { kind: "idle" } };
    case "session.error": {
      const { sessionID, error } = event.properties;
      if (!sessionID) return null;
      return { sessionID, signal: { kind: "error", name: error?.name ?? "UnknownError", message: errorText(error) } };
    }
    case "session.deleted":
      return { sessionID: event.properties.info.id ?? event.properties.sessionID, signal: { kind: "deleted" } };
    case "message.updated": {
      const { info } = event.properties;
      if (info.role !== "assistant") return { sessionID: info.sessionID, signal: { kind: "user", messageID: info.id } };
      return {
        sessionID: info.sessionID,
        signal: {
          kind: "assistant",
          messageID: info.id,
          completed: info.time.completed !== undefined,
          finish: info.finish ?? null,
          error: info.error ? stepError(info.error) : null,
        },
      };
    }
    case "message.part.updated": {
      const { part } = event.properties;
      if (part.type === "tool") {
        return {
          sessionID: part.sessionID,
          signal: {
            kind: "tool",
            callID: part.callID,
            tool: part.tool,
            status: part.state.status,
            input: part.state.status === "pending" ? null : JSON.stringify(part.state.input ?? {}),
          },
        };
      }
      if (isAnswerText(part)) {
        const { sessionID, messageID, id, text } = part;
        return { sessionID, signal: { kind: "text", messageID, partID: id, text } };
      }
      return null;
    }
    case "permission.asked": {
      const { id, sessionID, permission, patterns } = event.properties;
      return { sessionID, signal: { kind: "permission", requestID: id, permission, patterns } };
    }
    case "permission.replied": {
      const { sessionID, requestID, reply } = event.properties;
      return { sessionID, signal: { kind: "permission-replied", requestID, reply } };
    }
    case "todo.updated": {
      const { sessionID, todos } = event.properties;
      return { sessionID, signal: { kind: "todos", todos: todos.map(({ content, status }) => ({ content, status })) } };
    }
    default:
      return null;
  }
}

/** A text part that belongs to the answer: not injected by opencode (synthetic) nor hidden from the model (ignored). */
export function isAnswerText(part: Part): part is Extract<Part, { type: "text" }> {
  return part.type === "text" && !part.synthetic && !part.ignored;
}

/** A readable message from an opencode error value (`{name, data: {message}}`). */
export function errorText(error: { name?: string; data?: unknown } | undefined): string {
  if (!error) return "unknown error";
  const data = error.data as { message?: unknown; statusCode?: unknown } | undefined;
  const message = typeof data?.message === "string" && data.message ? data.message : (error.name ?? "unknown error");
  const status = typeof data?.statusCode === "number" ? ` (HTTP ${data.statusCode})` : "";
  return `${error.name && error.name !== "UnknownError" ? `${error.name}: ` : ""}${message}${status}`;
}

export const ABORTED_ERROR = "MessageAbortedError";

/** How an assistant step failed: `aborted` when the run was aborted (by us, or by someone else). */
export function stepError(error: { name?: string; data?: unknown }): { message: string; aborted: boolean } {
  return { message: errorText(error), aborted: error.name === ABORTED_ERROR };
}
