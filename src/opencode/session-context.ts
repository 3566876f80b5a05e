import type { Message, OpencodeEvent } from "./client.js";
import type { ModelRef } from "./client.js";

/** The agent and model a session's latest user message ran with: a prompt into it keeps them. */
export interface SessionContext {
  agent?: string;
  model?: ModelRef;
}

type UserInfo = Extract<Message, { role: "user" }>;

/** What a user message says about its session (opencode would switch agents on a prompt without it). */
export function contextOf(info: Partial<Pick<UserInfo, "agent" | "model">>): SessionContext {
  return {
    ...(info.agent ? { agent: info.agent } : {}),
    ...(info.model ? { model: { providerID: info.model.providerID, modelID: info.model.modelID } } : {}),
  };
}

/** The context of the latest user message among `messages` (oldest first); empty when there is none. */
export function latestContext(messages: Array<{ info: Message }>): SessionContext {
  const lastUser = messages.map((m) => m.info).findLast((info): info is UserInfo => info.role === "user");
  return lastUser ? contextOf(lastUser) : {};
}

/**
 * Every session's current agent and model, learnt from the event stream (`message.updated` of user
 * messages, for all sessions of the directory), so that prompting a session needs no read of its
 * messages first. Bounded: the sessions least recently prompted are forgotten first. After a reconnect,
 * events may have been missed, so everything is forgotten: `get` answers undefined until the next
 * user message, and callers read the messages instead.
 */
export class SessionContexts {
  readonly #max: number;
  /** In order of the latest user message, oldest first (a Map keeps insertion order). */
  readonly #sessions = new Map<string, { created: number; context: SessionContext }>();

  constructor(maxSessions = 5_000) {
    this.#max = maxSessions;
  }

  onEvent(event: OpencodeEvent): void {
    if (event.type !== "message.updated" || event.properties.info.role !== "user") return;
    const { info } = event.properties;
    const known = this.#sessions.get(info.sessionID);
    if (known && known.created > info.time.created) return; // an older message, updated again
    this.#sessions.delete(info.sessionID);
    this.#sessions.set(info.sessionID, { created: info.time.created, context: contextOf(info) });
    if (this.#sessions.size > this.#max) this.#sessions.delete(this.#sessions.keys().next().value!);
  }

  /** On every (re)connection of the event stream. */
  onConnected(reconnect: boolean): void {
    if (reconnect) this.#sessions.clear();
  }

  /** The session's context, or undefined when no user message of it was seen since the stream (re)connected. */
  get(sessionID: string): SessionContext | undefined {
    return this.#sessions.get(sessionID)?.context;
  }
}
