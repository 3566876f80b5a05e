/**
 * Builders for opencode v2 wire objects (events, messages, parts), shaped like what a 1.18 server sends
 * (see /work/shared/reference/opencode-server.md §3–5). Only the fields a test cares about are parameters.
 */
import type {
  AssistantMessage,
  EventSessionError,
  Part,
  Session,
  SessionStatus,
  TextPart,
  ToolPart,
  ToolState,
  UserMessage,
} from "@opencode-ai/sdk/v2";
import type { OpencodeEvent, SessionMessage } from "../../src/opencode/client.js";

export type OpencodeError = NonNullable<EventSessionError["properties"]["error"]>;

let counter = 0;
const next = (prefix: string): string => `${prefix}_${String(++counter).padStart(6, "0")}`;
/** The epoch ms the recorded fixtures are stamped with. */
export const T0 = 1_760_000_000_000;

// ---- events ---------------------------------------------------------------------------------------

export function statusEvent(sessionID: string, status: SessionStatus): OpencodeEvent {
  return { id: next("evt"), type: "session.status", properties: { sessionID, status } };
}

export const busy = (sessionID: string): OpencodeEvent => statusEvent(sessionID, { type: "busy" });
export const statusIdle = (sessionID: string): OpencodeEvent => statusEvent(sessionID, { type: "idle" });
/** opencode retries a failed provider call: `next` is when (epoch ms) the next attempt starts. */
export const retry = (sessionID: string, attempt = 1, message = "Provider is overloaded", next = T0 + 2_500): OpencodeEvent =>
  statusEvent(sessionID, { type: "retry", attempt, message, next });

export function sessionIdle(sessionID: string): OpencodeEvent {
  return { id: next("evt"), type: "session.idle", properties: { sessionID } };
}

export function sessionError(sessionID: string | undefined, error: OpencodeError | undefined): OpencodeEvent {
  return { id: next("evt"), type: "session.error", properties: { sessionID, error } };
}

export const unknownError = (message: string): OpencodeError => ({ name: "UnknownError", data: { message } });
export const abortedError = (): OpencodeError => ({ name: "MessageAbortedError", data: { message: "Aborted" } });
export const apiError = (message: string, statusCode: number): OpencodeError => ({
  name: "APIError",
  data: { message, statusCode, isRetryable: false, responseBody: "{}", metadata: { url: "http://127.0.0.1/v1" } },
});

export function session(id: string): Session {
  return {
    id,
    slug: "quiet-otter",
    projectID: "global",
    directory: "/work/project",
    title: "background task",
    version: "1.18.33",
    time: { created: T0, updated: T0 },
  };
}

export function sessionDeleted(sessionID: string): OpencodeEvent {
  return { id: next("evt"), type: "session.deleted", properties: { sessionID, info: session(sessionID) } };
}

export function messageUpdated(info: AssistantMessage | UserMessage): OpencodeEvent {
  return { id: next("evt"), type: "message.updated", properties: { sessionID: info.sessionID, info } };
}

export function partUpdated(part: Part): OpencodeEvent {
  return { id: next("evt"), type: "message.part.updated", properties: { sessionID: part.sessionID, part, time: T0 } };
}

export function todoUpdated(sessionID: string, todos: Array<{ content: string; status: string }>): OpencodeEvent {
  return {
    id: next("evt"),
    type: "todo.updated",
    properties: { sessionID, todos: todos.map((t) => ({ ...t, priority: "medium" })) },
  };
}

/** The session blocks until someone answers this request (as 1.18 sends it for a bash command). */
export function permissionAsked(
  sessionID: string,
  requestID: string,
  permission = "bash",
  patterns: string[] = ["rm -rf build"],
): OpencodeEvent {
  return {
    id: next("evt"),
    type: "permission.asked",
    properties: {
      id: requestID,
      sessionID,
      permission,
      patterns,
      metadata: {},
      always: patterns,
      tool: { messageID: "msg_a1", callID: "call_perm" },
    },
  };
}

export function permissionReplied(sessionID: string, requestID: string, reply: "once" | "always" | "reject"): OpencodeEvent {
  return { id: next("evt"), type: "permission.replied", properties: { sessionID, requestID, reply } };
}

export function serverConnected(): OpencodeEvent {
  return { id: next("evt"), type: "server.connected", properties: {} };
}

// ---- messages and parts ---------------------------------------------------------------------------

export function userMessage(sessionID: string, id = next("msg")): UserMessage {
  return {
    id,
    sessionID,
    role: "user",
    time: { created: T0 },
    agent: "explore",
    model: { providerID: "scripted", modelID: "scripted-1" },
  };
}

export interface AssistantOptions {
  id?: string;
  completed?: boolean;
  finish?: string;
  error?: OpencodeError;
  parentID?: string;
}

export function assistantMessage(sessionID: string, options: AssistantOptions = {}): AssistantMessage {
  const completed = options.completed ?? true;
  return {
    id: options.id ?? next("msg"),
    sessionID,
    role: "assistant",
    time: completed ? { created: T0 + 10, completed: T0 + 100 } : { created: T0 + 10 },
    parentID: options.parentID ?? "msg_user",
    modelID: "scripted-1",
    providerID: "scripted",
    mode: "explore",
    agent: "explore",
    path: { cwd: "/work/project", root: "/work/project" },
    cost: 0,
    tokens: { input: 10, output: 5, reasoning: 0, cache: { read: 0, write: 0 } },
    ...(options.finish === undefined ? {} : { finish: options.finish }),
    ...(options.error === undefined ? {} : { error: options.error }),
  };
}

export function textPart(
  sessionID: string,
  messageID: string,
  text: string,
  extra: { synthetic?: boolean; ignored?: boolean } = {},
): TextPart {
  return { id: next("prt"), sessionID, messageID, type: "text", text, time: { start: T0 }, ...extra };
}

export function toolState(status: ToolState["status"], input: Record<string, unknown> = {}, out = ""): ToolState {
  switch (status) {
    case "pending":
      return { status, input, raw: JSON.stringify(input) };
    case "running":
      return { status, input, time: { start: T0 } };
    case "completed":
      return { status, input, output: out, title: "tool", metadata: {}, time: { start: T0, end: T0 + 5 } };
    case "error":
      return { status, input, error: out, time: { start: T0, end: T0 + 5 } };
  }
}

export function toolPart(
  sessionID: string,
  messageID: string,
  callID: string,
  tool: string,
  state: ToolState,
  id = `prt_${callID}`,
): ToolPart {
  return { id, sessionID, messageID, type: "tool", callID, tool, state };
}

export function stepStart(sessionID: string, messageID: string): Part {
  return { id: next("prt"), sessionID, messageID, type: "step-start" };
}

export function stepFinish(sessionID: string, messageID: string, reason: string): Part {
  return {
    id: next("prt"),
    sessionID,
    messageID,
    type: "step-finish",
    reason,
    cost: 0,
    tokens: { input: 10, output: 5, reasoning: 0, cache: { read: 0, write: 0 } },
  };
}

/** A user prompt and one finished assistant step answering `text`, as `session.messages` returns them. */
export function answered(sessionID: string, prompt: string, text: string): SessionMessage[] {
  const user = userMessage(sessionID, "msg_user");
  const reply = assistantMessage(sessionID, { finish: "stop", parentID: user.id });
  return [
    { info: user, parts: [textPart(sessionID, user.id, prompt)] },
    {
      info: reply,
      parts: [stepStart(sessionID, reply.id), textPart(sessionID, reply.id, text), stepFinish(sessionID, reply.id, "stop")],
    },
  ];
}

/** Just the user prompt: the run has not written anything yet (or died before it could). */
export function promptOnly(sessionID: string, prompt: string): SessionMessage[] {
  const user = userMessage(sessionID, "msg_user");
  return [{ info: user, parts: [textPart(sessionID, user.id, prompt)] }];
}
