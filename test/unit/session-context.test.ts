import { describe, expect, it } from "vitest";
import type { Message, OpencodeEvent } from "../../src/opencode/client.js";
import { latestContext, SessionContexts } from "../../src/opencode/session-context.js";
import { assistantMessage, userMessage } from "./opencode-fixtures.js";

const updated = (info: Message): OpencodeEvent => ({ id: `evt_${info.id}`, type: "message.updated", properties: { sessionID: info.sessionID, info } });

function user(sessionID: string, agent: string, modelID: string, created = Date.now()): Message {
  return { ...userMessage(sessionID), agent, model: { providerID: "p", modelID, variant: "high" }, time: { created } };
}

describe("SessionContexts", () => {
  it("knows a session's agent and model from its latest user message on the event stream", () => {
    const contexts = new SessionContexts();
    expect(contexts.get("ses_a")).toBeUndefined();
    contexts.onEvent(updated(user("ses_a", "build", "m1", 1)));
    contexts.onEvent(updated(assistantMessage("ses_a")));
    contexts.onEvent({ id: "evt_idle", type: "session.idle", properties: { sessionID: "ses_a" } });
    expect(contexts.get("ses_a")).toEqual({ agent: "build", model: { providerID: "p", modelID: "m1" } });

    contexts.onEvent(updated(user("ses_a", "plan", "m2", 2)));
    expect(contexts.get("ses_a")).toEqual({ agent: "plan", model: { providerID: "p", modelID: "m2" } });
    expect(contexts.get("ses_b")).toBeUndefined();
  });

  it("keeps the latest message's context when an older user message is updated again", () => {
    const contexts = new SessionContexts();
    const older = user("ses_a", "build", "m1", 1);
    contexts.onEvent(updated(older));
    contexts.onEvent(updated(user("ses_a", "plan", "m2", 2)));
    contexts.onEvent(updated(older));
    expect(contexts.get("ses_a")?.agent).toBe("plan");
  });

  it("forgets everything after a reconnect, when events may have been missed", () => {
    const contexts = new SessionContexts();
    contexts.onEvent(updated(user("ses_a", "build", "m1")));
    contexts.onConnected(false);
    expect(contexts.get("ses_a")?.agent).toBe("build");
    contexts.onConnected(true);
    expect(contexts.get("ses_a")).toBeUndefined();
  });

  it("is bounded, forgetting the session prompted least recently", () => {
    const contexts = new SessionContexts(2);
    contexts.onEvent(updated(user("ses_a", "build", "m1", 1)));
    contexts.onEvent(updated(user("ses_b", "build", "m1", 2)));
    contexts.onEvent(updated(user("ses_a", "plan", "m1", 3)));
    contexts.onEvent(updated(user("ses_c", "build", "m1", 4)));
    expect(contexts.get("ses_b")).toBeUndefined();
    expect(contexts.get("ses_a")?.agent).toBe("plan");
    expect(contexts.get("ses_c")?.agent).toBe("build");
  });
});

describe("latestContext", () => {
  it("takes the latest user message of a transcript, or nothing without one", () => {
    const transcript = [user("ses_a", "build", "m1"), assistantMessage("ses_a"), user("ses_a", "plan", "m2"), assistantMessage("ses_a")];
    expect(latestContext(transcript.map((info) => ({ info })))).toEqual({ agent: "plan", model: { providerID: "p", modelID: "m2" } });
    expect(latestContext([{ info: assistantMessage("ses_a") }])).toEqual({});
  });
});
