import { afterEach, describe, expect, it, vi } from "vitest";
import type { OpencodeEvent, Part, SessionMessage, SessionStatus } from "../../src/opencode/client.js";
import { OpencodeRequestError, OpencodeUnreachableError } from "../../src/opencode/client.js";
import { SessionFollower, type FollowerApi, type SessionControl } from "../../src/tasks/follower.js";
import { DEFAULT_POLICY, TODO_CONTINUE_PROMPT, type TaskPolicy } from "../../src/tasks/policy.js";
import { TaskRecords } from "../../src/tasks/records.js";
import { SqliteTaskStore } from "../../src/tasks/sqlite-store.js";
import { createTask, type Task, type TaskProgress, type TerminalStatus } from "../../src/tasks/task.js";
import {
  abortedError,
  answered,
  apiError,
  assistantMessage,
  busy,
  messageUpdated,
  partUpdated,
  permissionAsked,
  permissionReplied,
  promptOnly,
  retry,
  serverConnected,
  sessionDeleted,
  sessionError,
  sessionIdle,
  statusIdle,
  stepFinish,
  stepStart,
  T0,
  textPart,
  todoUpdated,
  toolPart,
  toolState,
  unknownError,
  userMessage,
  type OpencodeError,
} from "./opencode-fixtures.js";

const PROMPTED_AT = 100_000;
/** The follower's take-up grace (5 s): resync leaves a fresh, silent session alone this long. */
const GRACE_MS = 5_000;

interface FinishCall {
  taskId: string;
  status: TerminalStatus;
  fields: { result?: string | null; error?: string | null };
}

/**
 * What the follower did: every write it asked of the task records, as asked (a finish a terminal task
 * ignores is still recorded), and every stop and continuation it asked of the session control.
 */
interface Did {
  finishes: FinishCall[];
  /** `retrying` is recorded as passed (undefined when the follower left it out). */
  progresses: Array<{ taskId: string; progress: TaskProgress; retrying?: boolean }>;
  stops: Array<{ taskId: string; reason: string }>;
  prompts: Array<{ taskId: string; text: string }>;
}

/** The real task records over an in-memory store, with the writes recorded in `did`. */
function recordedRecords(did: Did): TaskRecords {
  const records = new TaskRecords(new SqliteTaskStore(":memory:"));
  const finish = records.finish.bind(records);
  records.finish = (taskId, status, fields) => {
    // The final progress is checked on the task itself.
    const { progress: _final, ...ended } = fields;
    did.finishes.push({ taskId, status, fields: ended });
    return finish(taskId, status, fields);
  };
  const progress = records.progress.bind(records);
  records.progress = (taskId, taskProgress, retrying?: boolean) => {
    did.progresses.push({ taskId, progress: structuredClone(taskProgress), retrying });
    progress(taskId, taskProgress, retrying);
  };
  return records;
}

/**
 * The session runner's side of SessionControl, in memory: `stop` marks the session as aborting (as the
 * runner does, before its abort request resolves) and leaves the task running until a test finishes it;
 * `continue` records the prompt time as the runner does once opencode accepts the prompt.
 */
class FakeControl implements SessionControl {
  constructor(
    readonly did: Did,
    readonly records: TaskRecords,
    readonly markAborting: (sessionID: string) => void,
  ) {}

  stop(taskId: string, reason: string): void {
    this.did.stops.push({ taskId, reason });
    this.markAborting(this.records.get(taskId)!.session_id!);
  }

  async continue(taskId: string, text: string): Promise<void> {
    this.did.prompts.push({ taskId, text });
    this.records.markPrompted(taskId);
  }
}

/** Answers like opencode's REST API, from recorded data; counts every call. */
class FakeApi implements FollowerApi {
  readonly messageReads: string[] = [];
  readonly existsChecks: string[] = [];
  statusReads = 0;
  /** What `session.status()` returns: busy and retrying sessions only. */
  busy: Record<string, SessionStatus> = {};
  readonly answers = new Map<string, () => Promise<SessionMessage[]>>();
  readonly missing = new Set<string>();
  readonly replies: Array<{ requestID: string; reply: "once" | "always" | "reject"; message?: string }> = [];
  /** When set, replyPermission rejects with it (opencode unreachable). */
  replyError: Error | null = null;

  answer(sessionID: string, messages: SessionMessage[]): void {
    this.answers.set(sessionID, () => Promise.resolve(structuredClone(messages)));
  }

  /** The next reads of `sessionID` wait until the returned function is called. */
  gate(sessionID: string, messages: SessionMessage[]): () => void {
    let open!: () => void;
    const opened = new Promise<void>((resolve) => (open = resolve));
    this.answers.set(sessionID, async () => {
      await opened;
      return structuredClone(messages);
    });
    return open;
  }

  fail(sessionID: string, error: Error): void {
    this.answers.set(sessionID, () => Promise.reject(error));
  }

  async messages(sessionID: string): Promise<SessionMessage[]> {
    this.messageReads.push(sessionID);
    const answer = this.answers.get(sessionID);
    return answer ? answer() : [];
  }

  async statuses(): Promise<Record<string, SessionStatus>> {
    this.statusReads++;
    return { ...this.busy };
  }

  async sessionExists(sessionID: string): Promise<boolean> {
    this.existsChecks.push(sessionID);
    return !this.missing.has(sessionID);
  }

  async replyPermission(requestID: string, reply: "once" | "always" | "reject", message?: string): Promise<void> {
    this.replies.push({ requestID, reply, message });
    if (this.replyError) throw this.replyError;
  }
}

async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}

afterEach(() => {
  vi.useRealTimers();
});

/**
 * `policy` overrides parts of DEFAULT_POLICY; without it the follower runs on its own default.
 * Only Date is faked (setImmediate stays real for flush()): the clock stands at PROMPTED_AT until a
 * test moves it, and `resync(now)` moves it to `now`, so the follower's Date.now() and `now` agree.
 */
function setup(policy?: Partial<TaskPolicy>) {
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(PROMPTED_AT);
  const did: Did = { finishes: [], progresses: [], stops: [], prompts: [] };
  const records = recordedRecords(did);
  const api = new FakeApi();
  const control = new FakeControl(did, records, (sessionID) => follower.markAborting(sessionID));
  const follower =
    policy === undefined ? new SessionFollower(api, records, control) : new SessionFollower(api, records, control, { ...DEFAULT_POLICY, ...policy });
  /**
   * A running, prompted task following `sessionID`, as the session runner leaves it: followed before its
   * prompt, or (`recovered`) only after it, as after a restart.
   */
  const start = (taskId: string, sessionID: string, promptedAt: number | null = PROMPTED_AT, recovered = false): Task => {
    const now = Date.now();
    records.add(
      createTask(
        taskId,
        {
          owner: "local",
          description: `task ${taskId}`,
          prompt: "Find where the config is parsed",
          agent: "explore",
          model: null,
          parent_session_id: null,
          timeout_ms: null,
        },
        PROMPTED_AT - 1_000,
      ),
    );
    vi.setSystemTime(PROMPTED_AT - 500);
    records.markRunning(taskId);
    if (!recovered) follower.follow(taskId, sessionID);
    records.markSession(taskId, sessionID, false);
    if (promptedAt !== null) {
      vi.setSystemTime(promptedAt);
      records.markPrompted(taskId);
    }
    vi.setSystemTime(now);
    if (recovered) follower.follow(taskId, sessionID);
    return records.get(taskId)!;
  };
  const feed = (...events: OpencodeEvent[]): void => {
    for (const event of events) follower.onEvent(event);
  };
  const task = (taskId: string): Task => records.get(taskId)!;
  const resync = (now: number, all: boolean): Promise<void> => {
    vi.setSystemTime(now);
    return follower.resync(now, all);
  };
  return { did, records, api, follower, start, feed, task, resync };
}

const S = "ses_2138cad3affeJ7n2kVpQ4cT9xZ";
const PROMPT = "Find where the config is parsed";

/** What opencode emits from prompt_async until the first assistant step starts (recorded on 1.18.33). */
function promptTaken(sessionID: string, prompt = PROMPT, assistantID = "msg_a1"): OpencodeEvent[] {
  const user = userMessage(sessionID, "msg_user");
  return [
    messageUpdated(user),
    partUpdated(textPart(sessionID, user.id, prompt)),
    busy(sessionID),
    messageUpdated(assistantMessage(sessionID, { id: assistantID, completed: false, parentID: user.id })),
    messageUpdated(user),
    busy(sessionID),
    partUpdated(stepStart(sessionID, assistantID)),
  ];
}

/** A complete text run: the prompt is taken, the answer streams in, the step finishes, the session goes idle. */
function textRun(sessionID: string, answer: string, assistantID = "msg_a1"): OpencodeEvent[] {
  const text = textPart(sessionID, assistantID, "");
  const done = assistantMessage(sessionID, { id: assistantID, finish: "stop", parentID: "msg_user" });
  return [
    ...promptTaken(sessionID, PROMPT, assistantID),
    partUpdated(text),
    partUpdated({ ...text, text: answer.slice(0, 5) }),
    partUpdated({ ...text, text: answer }),
    partUpdated(stepFinish(sessionID, assistantID, "stop")),
    messageUpdated(done),
    messageUpdated(done),
    busy(sessionID),
    statusIdle(sessionID),
    sessionIdle(sessionID),
  ];
}

describe("SessionFollower: completion", () => {
  it("ends a normal text run once, as completed, with the final text", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    const answer = "The config is parsed in src/config.ts by parseCli().";
    api.answer(S, answered(S, PROMPT, answer));
    feed(...textRun(S, answer));
    await flush();

    expect(did.finishes).toEqual([{ taskId: "t1", status: "completed", fields: { result: answer } }]);
    expect(api.messageReads).toEqual([]);
    expect(task("t1").status).toBe("completed");
    expect(task("t1").result).toBe(answer);
    expect(task("t1").progress.last_message).toBe(answer);
    expect(task("t1").progress.tool_calls).toBe(0);
  });

  it("takes the result from the stored messages when it followed the session only after the prompt", async () => {
    const { did, api, start, feed } = setup();
    start("t1", S, PROMPTED_AT, true);
    api.answer(S, answered(S, PROMPT, "stored final answer"));
    feed(...textRun(S, "streamed text that was later revised"));
    await flush();
    expect(api.messageReads).toEqual([S]);
    expect(did.finishes).toHaveLength(1);
    expect(did.finishes[0]!.fields.result).toBe("stored final answer");
  });

  it("shows streamed assistant text as a flattened, bounded preview while running", () => {
    const { start, feed, task } = setup();
    start("t1", S);
    const long = `First line\n\n  second   line ${"x".repeat(500)}`;
    feed(...promptTaken(S), partUpdated(textPart(S, "msg_a1", long)));
    const preview = task("t1").progress.last_message!;
    expect(preview.startsWith("First line second line x")).toBe(true);
    expect(preview).not.toMatch(/\n|\s{2}/);
    expect(preview.length).toBeLessThanOrEqual(200);
    expect(preview.endsWith("…")).toBe(true);
    expect(task("t1").status).toBe("running");
  });

  it("never shows our own prompt (the user message's text part) as the agent's latest message", () => {
    const { did, start, feed, task } = setup();
    start("t1", S);
    feed(...promptTaken(S, "SECRET PROMPT TEXT"));
    expect(task("t1").progress.last_message).toBeNull();
    expect(did.progresses.map((p) => p.progress.last_message)).not.toContain("SECRET PROMPT TEXT");
  });

  it("completes a run whose agent wrote no text with an empty result, not with the prompt as its message", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    const [user] = promptOnly(S, PROMPT);
    const step = assistantMessage(S, { id: "msg_a1", finish: "stop" });
    const call = toolPart(S, step.id, "call_1", "bash", toolState("completed", { command: "true" }, ""));
    api.answer(S, [user!, { info: step, parts: [stepStart(S, step.id), call, stepFinish(S, step.id, "stop")] }]);
    feed(...promptTaken(S), partUpdated(call), messageUpdated(step), statusIdle(S), sessionIdle(S));
    await flush();
    expect(did.finishes).toEqual([{ taskId: "t1", status: "completed", fields: { result: "" } }]);
    expect(task("t1").progress.last_message).toBeNull();
    expect(task("t1").progress.tool_calls).toBe(1);
  });

  it("reads messages once and finishes once for duplicate idles while the read is in flight", async () => {
    const { did, api, start, feed } = setup();
    start("t1", S);
    const open = api.gate(S, answered(S, PROMPT, "done"));
    feed(...promptTaken(S), statusIdle(S), sessionIdle(S), statusIdle(S), sessionIdle(S));
    await flush();
    expect(api.messageReads).toEqual([S]);
    expect(did.finishes).toEqual([]);

    open();
    await flush();
    expect(did.finishes).toEqual([{ taskId: "t1", status: "completed", fields: { result: "done" } }]);

    // Idles after the end change nothing and read nothing.
    feed(statusIdle(S), sessionIdle(S));
    await flush();
    expect(api.messageReads).toEqual([S]);
    expect(did.finishes).toHaveLength(1);
  });

  it("leaves a run alone when the idle's read shows it is not over (tool-calls step, unfinished step)", async () => {
    const { did, api, start, feed } = setup();
    start("t1", S);
    const [user, reply] = answered(S, PROMPT, "calling a tool");
    api.answer(S, [user!, { ...reply!, info: { ...assistantMessage(S, { finish: "tool-calls" }) } }]);
    feed(...promptTaken(S), sessionIdle(S));
    await flush();
    expect(api.messageReads).toEqual([S]);
    expect(did.finishes).toEqual([]);

    api.answer(S, [user!, { ...reply!, info: assistantMessage(S, { completed: false }) }]);
    feed(sessionIdle(S));
    await flush();
    expect(api.messageReads).toEqual([S, S]);
    expect(did.finishes).toEqual([]);

    api.answer(S, answered(S, PROMPT, "finally"));
    feed(sessionIdle(S));
    await flush();
    expect(did.finishes).toEqual([{ taskId: "t1", status: "completed", fields: { result: "finally" } }]);
  });

  it("keeps the task running when the idle's read fails (not a 404), and finishes on the next idle", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    api.fail(S, new OpencodeUnreachableError("opencode is unreachable at http://127.0.0.1:4096"));
    feed(...promptTaken(S), sessionIdle(S));
    await flush();
    expect(did.finishes).toEqual([]);
    expect(task("t1").status).toBe("running");

    api.answer(S, answered(S, PROMPT, "ok"));
    feed(sessionIdle(S));
    await flush();
    expect(did.finishes.map((f) => f.status)).toEqual(["completed"]);
  });

  it("ends the task as an error when the idle's read answers 404", async () => {
    const { did, api, start, feed } = setup();
    start("t1", S);
    api.fail(S, new OpencodeRequestError(`Session not found: ${S}`, 404));
    feed(...promptTaken(S), sessionIdle(S));
    await flush();
    expect(did.finishes).toHaveLength(1);
    expect(did.finishes[0]!.status).toBe("error");
    expect(did.finishes[0]!.fields.error).toContain(S);
    expect(did.finishes[0]!.fields.error).toContain("no longer exists");
  });
});

/** One assistant step of a scripted run: its text parts, its tool calls, and how it ended. */
interface ScriptStep {
  texts?: Array<string | { text: string; synthetic?: boolean; ignored?: boolean }>;
  tools?: string[];
  finish?: "stop" | "tool-calls";
  error?: OpencodeError;
}

/**
 * A run as opencode streams it (our prompt, then each step: created, its parts streamed from empty to
 * full, finished; then idle) and as it stores it, from one script, so the two sources agree.
 */
function scripted(sessionID: string, steps: ScriptStep[]): { events: OpencodeEvent[]; messages: SessionMessage[] } {
  const user = userMessage(sessionID, "msg_user");
  const prompt = textPart(sessionID, user.id, PROMPT);
  const events = [messageUpdated(user), partUpdated(prompt), busy(sessionID)];
  const messages: SessionMessage[] = [{ info: user, parts: [prompt] }];
  steps.forEach((step, i) => {
    const id = `msg_a${i + 1}`;
    const ended = step.error ? { error: step.error } : { finish: step.finish ?? "stop" };
    const parts: Part[] = [stepStart(sessionID, id)];
    events.push(messageUpdated(assistantMessage(sessionID, { id, completed: false, parentID: user.id })), partUpdated(parts[0]!));
    for (const entry of step.texts ?? []) {
      const { text, ...extra } = typeof entry === "string" ? { text: entry } : entry;
      const part = textPart(sessionID, id, text, extra);
      events.push(partUpdated({ ...part, text: "" }), partUpdated(part));
      parts.push(part);
    }
    for (const tool of step.tools ?? []) {
      const call = toolPart(sessionID, id, `call_${id}_${tool}`, tool, toolState("completed", {}, "ok"));
      events.push(partUpdated(call));
      parts.push(call);
    }
    if (!step.error) parts.push(stepFinish(sessionID, id, step.finish ?? "stop"));
    const info = assistantMessage(sessionID, { id, parentID: user.id, ...ended });
    events.push(...parts.slice(-1).map(partUpdated), messageUpdated(info));
    messages.push({ info, parts });
  });
  events.push(statusIdle(sessionID), sessionIdle(sessionID));
  return { events, messages };
}

describe("SessionFollower: settling from the streamed events", () => {
  const lookThenAnswer: ScriptStep[] = [
    { texts: ["Let me look."], tools: ["grep"], finish: "tool-calls" },
    { texts: ["Found it: parse() in src/config.ts."] },
  ];
  const cases: Array<[string, ScriptStep[], { result: string } | { error: string }]> = [
    ["a text answer", [{ texts: ["The config is parsed in src/config.ts."] }], { result: "The config is parsed in src/config.ts." }],
    [
      "an answer in several parts, synthetic and ignored ones left out",
      [{ texts: ["part one", { text: "injected", synthetic: true }, { text: "hidden", ignored: true }, "", "part two  "] }],
      { result: "part one\n\npart two" },
    ],
    ["a tool round, then the answer", lookThenAnswer, { result: "Found it: parse() in src/config.ts." }],
    [
      "tool rounds ending in a step without text (the latest text written)",
      [
        { texts: ["Looking."], tools: ["grep"], finish: "tool-calls" },
        { tools: ["read"], finish: "tool-calls" },
        { texts: ["  "], tools: ["bash"], finish: "tool-calls" },
        {},
      ],
      { result: "Looking." },
    ],
    ["an empty answer", [{ tools: ["bash"], finish: "tool-calls" }, {}], { result: "" }],
    ["an error on the last step", [{ texts: ["partial"], error: apiError("upstream overloaded", 529) }], { error: "APIError: upstream overloaded (HTTP 529)" }],
    ["an abort we did not ask for", [{ texts: ["partial"], error: abortedError() }], { error: "MessageAbortedError: Aborted" }],
  ];

  it.each(cases)("ends %s from the events without reading messages, as the read ends it", async (_, steps, expected) => {
    const { events, messages } = scripted(S, steps);
    const fromStream = setup();
    fromStream.start("t1", S);
    fromStream.feed(...events);
    await flush();

    const fromRead = setup();
    fromRead.start("t1", S, PROMPTED_AT, true);
    fromRead.api.answer(S, messages);
    fromRead.feed(...events);
    await flush();

    const status = "result" in expected ? "completed" : "error";
    expect(fromStream.api.messageReads).toEqual([]);
    expect(fromRead.api.messageReads).toEqual([S]);
    expect(fromStream.did.finishes).toEqual([{ taskId: "t1", status, fields: expected }]);
    expect(fromRead.did.finishes).toEqual(fromStream.did.finishes);
    expect(fromStream.task("t1")).toEqual(fromRead.task("t1"));
  });

  it("ends the task in the idle's own turn, with its final progress, as one stored change", () => {
    const { records, start, feed } = setup();
    start("t1", S);
    const { events } = scripted(S, lookThenAnswer);
    const idles = events.splice(-2);
    feed(...events);
    const changes: string[] = [];
    records.on("change", ({ event, task }) => changes.push(`${event} ${task.progress.last_message}`));
    feed(...idles);
    expect(changes).toEqual(["task.completed Found it: parse() in src/config.ts."]);
  });

  it("settles a long run from the events: the latest text, however many steps came after it", async () => {
    const steps: ScriptStep[] = [
      { texts: ["First look."], finish: "tool-calls", tools: ["grep"] },
      ...Array.from({ length: 300 }, (_, i): ScriptStep => ({ texts: i === 150 ? ["Halfway."] : [], tools: ["read"], finish: "tool-calls" })),
      {},
    ];
    const { did, api, start, feed } = setup({ maxToolCalls: 1_000, maxRepeatedToolCalls: 1_000 });
    start("t1", S);
    feed(...scripted(S, steps).events);
    await flush();
    expect(api.messageReads).toEqual([]);
    expect(did.finishes).toEqual([{ taskId: "t1", status: "completed", fields: { result: "Halfway." } }]);
  });

  /**
   * The run of `steps` streamed as `deliver` feeds it: the stream cannot vouch for it, so the idle reads the
   * messages once, and the task ends with the answer they hold.
   */
  async function expectSettledByRead(
    steps: ScriptStep[],
    deliver: (events: OpencodeEvent[], feed: (...events: OpencodeEvent[]) => void, follower: SessionFollower) => void,
  ): Promise<void> {
    const { did, api, start, feed, follower } = setup();
    start("t1", S);
    const { events, messages } = scripted(S, steps);
    api.answer(S, messages);
    deliver(events, feed, follower);
    await flush();
    expect(api.messageReads).toEqual([S]);
    expect(did.finishes).toEqual([{ taskId: "t1", status: "completed", fields: { result: "Found it: parse() in src/config.ts." } }]);
  }

  it("reads the messages when the stream reconnected during the run (events may be lost)", async () => {
    await expectSettledByRead(lookThenAnswer, (events, feed, follower) => {
      feed(...events.slice(0, 6));
      follower.onReconnect();
      feed(...events.slice(6));
    });
  });

  it("reads the messages when it did not see the run start (no user message since it followed)", async () => {
    await expectSettledByRead(lookThenAnswer, (events, feed) => feed(...events.slice(2)));
  });

  it("reads the messages when an older step changes after a newer one started", async () => {
    await expectSettledByRead([{ tools: ["grep"], finish: "tool-calls" }, ...lookThenAnswer], (events, feed) => {
      const idles = events.splice(-2);
      feed(...events, partUpdated(textPart(S, "msg_a1", "a late word")), ...idles);
    });
  });

  it("reads the messages when a step's text arrives without the step's start (its announcement was lost)", async () => {
    await expectSettledByRead(lookThenAnswer, (events, feed) => {
      const lastStart = events.findIndex((e) => e.type === "message.updated" && e.properties.info.id === "msg_a2");
      events.splice(lastStart, 1);
      feed(...events);
    });
  });

  it("reads the messages when the stream shows the last step unfinished at idle", async () => {
    await expectSettledByRead(lookThenAnswer, (events, feed) => {
      const idles = events.splice(-2);
      events.splice(-1); // the last step's completion is never streamed
      feed(...events, ...idles);
    });
  });
});

describe("SessionFollower: errors", () => {
  const agentNotFound = 'Agent not found: "nope". Available agents: build, explore, general, plan';

  it("ends with the error message on session.error without any idle (unknown agent)", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    // Recorded: two UnknownError events ~1 ms after the 204, then nothing at all.
    feed(
      sessionError(S, unknownError(agentNotFound)),
      sessionError(S, unknownError("UnknownError: UnknownError\n    at <anonymous> (/$bunfs/root/chunk.js:1142:2068)")),
    );
    await flush();
    expect(did.finishes).toEqual([{ taskId: "t1", status: "error", fields: { error: agentNotFound } }]);
    expect(task("t1").status).toBe("error");
    expect(task("t1").error).toBe(agentNotFound);
    expect(api.messageReads).toEqual([]);
  });

  it("ends once for an unknown model: error, then idle, then a second error", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    feed(
      ...promptTaken(S),
      sessionError(S, unknownError("Model not found: p/m.")),
      statusIdle(S),
      sessionIdle(S),
      sessionError(S, unknownError("Model not found: p/m.")),
    );
    await flush();
    expect(did.finishes).toHaveLength(1);
    expect(did.finishes[0]!.status).toBe("error");
    expect(task("t1").error).toContain("Model not found: p/m.");
    expect(api.messageReads).toEqual([]);
  });

  it("names the error and the HTTP status of a provider failure", async () => {
    const { did, start, feed } = setup();
    start("t1", S);
    feed(...promptTaken(S), sessionError(S, apiError("Bad Request: model is required", 400)), statusIdle(S), sessionIdle(S));
    await flush();
    expect(did.finishes).toHaveLength(1);
    const error = did.finishes[0]!.fields.error!;
    expect(error).toContain("APIError");
    expect(error).toContain("Bad Request: model is required");
    expect(error).toContain("400");
  });

  it("ends with an error when the idle's read shows an errored last step", async () => {
    const { did, api, start, feed } = setup();
    start("t1", S);
    const [user] = answered(S, PROMPT, "");
    api.answer(S, [user!, { info: assistantMessage(S, { error: apiError("upstream overloaded", 529) }), parts: [] }]);
    feed(...promptTaken(S), sessionIdle(S));
    await flush();
    expect(did.finishes).toHaveLength(1);
    expect(did.finishes[0]!.status).toBe("error");
    expect(did.finishes[0]!.fields.error).toContain("upstream overloaded");
  });

  it("ignores session.error events without a session id", async () => {
    const { did, start, feed } = setup();
    start("t1", S);
    feed(...promptTaken(S), sessionError(undefined, unknownError("global failure")));
    await flush();
    expect(did.finishes).toEqual([]);
  });
});

describe("SessionFollower: take-up race", () => {
  it("ignores an idle that comes before any busy or assistant signal", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    api.answer(S, answered(S, PROMPT, "done"));
    feed(statusIdle(S), sessionIdle(S));
    await flush();
    expect(did.finishes).toEqual([]);
    expect(api.messageReads).toEqual([]);
    expect(task("t1").status).toBe("running");

    // Once the prompt is taken up, the next idle counts.
    feed(busy(S), sessionIdle(S));
    await flush();
    expect(api.messageReads).toEqual([S]);
    expect(did.finishes.map((f) => f.status)).toEqual(["completed"]);
  });

  it("does not count our own prompt (user message and its text part) as take-up", async () => {
    const { did, api, start, feed } = setup();
    start("t1", S);
    api.answer(S, promptOnly(S, PROMPT));
    const user = userMessage(S, "msg_user");
    feed(messageUpdated(user), partUpdated(textPart(S, user.id, PROMPT)), statusIdle(S), sessionIdle(S));
    await flush();
    expect(api.messageReads).toEqual([]);
    expect(did.finishes).toEqual([]);
  });

  it("counts a retry status as take-up", async () => {
    const { did, api, start, feed } = setup();
    start("t1", S);
    api.answer(S, answered(S, PROMPT, "done"));
    feed(retry(S, 1, "Provider is overloaded"), statusIdle(S));
    await flush();
    expect(api.messageReads).toEqual([S]);
    expect(did.finishes).toHaveLength(1);
  });

  it("counts an assistant message as take-up", async () => {
    const { did, api, start, feed } = setup();
    start("t1", S);
    api.answer(S, answered(S, PROMPT, "done"));
    feed(messageUpdated(assistantMessage(S, { completed: false })), sessionIdle(S));
    await flush();
    expect(api.messageReads).toEqual([S]);
    expect(did.finishes).toHaveLength(1);
  });
});

describe("SessionFollower: cancellation and abort", () => {
  it("ends a deleted session's task as cancelled, naming the session", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    feed(...promptTaken(S), sessionDeleted(S), statusIdle(S), sessionIdle(S));
    await flush();
    expect(did.finishes).toHaveLength(1);
    expect(did.finishes[0]!.status).toBe("cancelled");
    expect(did.finishes[0]!.fields.error).toContain(S);
    expect(task("t1").status).toBe("cancelled");
    expect(api.messageReads).toEqual([]);
  });

  it("does not end a task we aborted ourselves: MessageAbortedError and idle are expected", async () => {
    const { did, api, start, feed, follower, task } = setup();
    start("t1", S);
    const [user] = promptOnly(S, PROMPT);
    api.answer(S, [user!, { info: assistantMessage(S, { error: abortedError() }), parts: [] }]);
    feed(...promptTaken(S));
    follower.markAborting(S);
    // Recorded abort: error, idle ×2, the assistant message updated with the error in between.
    feed(
      sessionError(S, abortedError()),
      statusIdle(S),
      sessionIdle(S),
      messageUpdated(assistantMessage(S, { id: "msg_a1", error: abortedError() })),
      statusIdle(S),
      sessionIdle(S),
    );
    await flush();
    expect(did.finishes).toEqual([]);
    expect(task("t1").status).toBe("running");
  });

  it("treats an abort it did not ask for as an error", async () => {
    const { did, api, start, feed } = setup();
    start("t1", S);
    feed(...promptTaken(S), sessionError(S, abortedError()), statusIdle(S), sessionIdle(S));
    await flush();
    expect(did.finishes).toHaveLength(1);
    expect(api.messageReads).toEqual([]);
    expect(did.finishes[0]!.status).toBe("error");
    expect(did.finishes[0]!.fields.error).toContain("Aborted");
  });

  it("treats an abort seen only in the stored messages (its event missed) as an error when we did not abort", async () => {
    const { did, api, start, feed } = setup();
    start("t1", S);
    const [user] = promptOnly(S, PROMPT);
    api.answer(S, [user!, { info: assistantMessage(S, { error: abortedError() }), parts: [] }]);
    feed(...promptTaken(S), sessionIdle(S));
    await flush();
    expect(api.messageReads).toEqual([S]);
    expect(did.finishes.map((f) => f.status)).toEqual(["error"]);
    expect(did.finishes[0]!.fields.error).toContain("Aborted");
  });

  it("still reports a real error after markAborting", async () => {
    const { did, start, feed, follower } = setup();
    start("t1", S);
    feed(...promptTaken(S));
    follower.markAborting(S);
    feed(sessionError(S, apiError("provider exploded", 500)));
    await flush();
    expect(did.finishes.map((f) => f.status)).toEqual(["error"]);
    expect(did.finishes[0]!.fields.error).toContain("provider exploded");
  });
});

describe("SessionFollower: progress", () => {
  it("counts one tool call per call id across pending -> running -> completed", () => {
    const { start, feed, task } = setup();
    start("t1", S);
    const input = { command: "ls src" };
    feed(
      ...promptTaken(S),
      partUpdated(toolPart(S, "msg_a1", "call_1", "bash", toolState("pending", input))),
      partUpdated(toolPart(S, "msg_a1", "call_1", "bash", toolState("running", input))),
      partUpdated(toolPart(S, "msg_a1", "call_1", "bash", toolState("running", input))),
      partUpdated(toolPart(S, "msg_a1", "call_1", "bash", toolState("completed", input, "config.ts\n"))),
    );
    expect(task("t1").progress.tool_calls).toBe(1);
    expect(task("t1").progress.last_tool).toBe("bash");
  });

  it("announces a tool call once, not on every state update of the same call", () => {
    const { did, start, feed } = setup();
    start("t1", S);
    feed(...promptTaken(S));
    const before = did.progresses.length;
    feed(
      partUpdated(toolPart(S, "msg_a1", "call_1", "bash", toolState("pending"))),
      partUpdated(toolPart(S, "msg_a1", "call_1", "bash", toolState("running"))),
      partUpdated(toolPart(S, "msg_a1", "call_1", "bash", toolState("running"))),
      partUpdated(toolPart(S, "msg_a1", "call_1", "bash", toolState("completed", {}, "ok"))),
    );
    expect(did.progresses.slice(before)).toEqual([
      { taskId: "t1", progress: { tool_calls: 1, last_tool: "bash", last_message: null } },
    ]);
  });

  it("counts parallel calls by id when their updates interleave", () => {
    const { start, feed, task } = setup();
    start("t1", S);
    feed(
      ...promptTaken(S),
      partUpdated(toolPart(S, "msg_a1", "call_1", "bash", toolState("running"))),
      partUpdated(toolPart(S, "msg_a1", "call_2", "read", toolState("running"))),
      partUpdated(toolPart(S, "msg_a1", "call_1", "bash", toolState("completed", {}, "ok"))),
      partUpdated(toolPart(S, "msg_a1", "call_2", "read", toolState("completed", {}, "ok"))),
    );
    expect(task("t1").progress.tool_calls).toBe(2);
  });

  it("counts two call ids as two tool calls and reports the latest tool", () => {
    const { start, feed, task } = setup();
    start("t1", S);
    feed(
      ...promptTaken(S),
      partUpdated(toolPart(S, "msg_a1", "call_1", "bash", toolState("pending"))),
      partUpdated(toolPart(S, "msg_a1", "call_1", "bash", toolState("completed", {}, "ok"))),
      partUpdated(toolPart(S, "msg_a2", "call_2", "read", toolState("pending"))),
      partUpdated(toolPart(S, "msg_a2", "call_2", "read", toolState("running"))),
      partUpdated(toolPart(S, "msg_a2", "call_2", "read", toolState("error", {}, "no such file"))),
    );
    expect(task("t1").progress.tool_calls).toBe(2);
    expect(task("t1").progress.last_tool).toBe("read");
  });

  it("keeps the tool count when text arrives, and the text when tools arrive", () => {
    const { start, feed, task } = setup();
    start("t1", S);
    feed(
      ...promptTaken(S),
      partUpdated(toolPart(S, "msg_a1", "call_1", "grep", toolState("completed", {}, "match"))),
      messageUpdated(assistantMessage(S, { id: "msg_a2", completed: false })),
      partUpdated(textPart(S, "msg_a2", "Looking at the matches")),
      partUpdated(toolPart(S, "msg_a2", "call_2", "read", toolState("pending"))),
    );
    expect(task("t1").progress).toMatchObject({ tool_calls: 2, last_tool: "read", last_message: "Looking at the matches" });
  });

  it("records the todos left incomplete at idle (latest list wins) and still completes (no continuations)", async () => {
    const { did, api, start, feed, task } = setup({ todoContinuations: 0 });
    start("t1", S);
    api.answer(S, answered(S, PROMPT, "partly done"));
    feed(
      ...promptTaken(S),
      todoUpdated(S, [
        { content: "read config", status: "pending" },
        { content: "write tests", status: "pending" },
      ]),
      todoUpdated(S, [
        { content: "read config", status: "completed" },
        { content: "write tests", status: "in_progress" },
        { content: "fix lint", status: "pending" },
        { content: "drop idea", status: "cancelled" },
      ]),
      sessionIdle(S),
    );
    await flush();
    expect(did.finishes.map((f) => f.status)).toEqual(["completed"]);
    expect(task("t1").progress.incomplete_todos).toEqual([
      { content: "write tests", status: "in_progress" },
      { content: "fix lint", status: "pending" },
    ]);
    expect(task("t1").result).toBe("partly done\n\nIncomplete todos:\n- [in_progress] write tests\n- [pending] fix lint");
    expect(did.prompts).toEqual([]);
  });

  it("records a single incomplete todo", async () => {
    const { api, start, feed, task } = setup({ todoContinuations: 0 });
    start("t1", S);
    api.answer(S, answered(S, PROMPT, "almost"));
    feed(
      ...promptTaken(S),
      todoUpdated(S, [
        { content: "a", status: "completed" },
        { content: "b", status: "pending" },
      ]),
      sessionIdle(S),
    );
    await flush();
    expect(task("t1").progress.incomplete_todos).toEqual([{ content: "b", status: "pending" }]);
    expect(task("t1").result).toBe("almost\n\nIncomplete todos:\n- [pending] b");
  });

  it("records no incomplete todos when all are done", async () => {
    const { api, start, feed, task } = setup();
    start("t1", S);
    api.answer(S, answered(S, PROMPT, "all done"));
    feed(...promptTaken(S), todoUpdated(S, [{ content: "a", status: "completed" }]), sessionIdle(S));
    await flush();
    expect(task("t1").status).toBe("completed");
    expect(task("t1").progress.incomplete_todos).toBeUndefined();
    expect(task("t1").result).toBe("all done");
  });
});

describe("SessionFollower: routing", () => {
  it("ignores events for sessions it does not follow", async () => {
    const { did, api, start, feed, task } = setup();
    const before = start("t1", S);
    const other = "ses_other";
    api.answer(other, answered(other, PROMPT, "not ours"));
    feed(
      serverConnected(),
      ...textRun(other, "not ours"),
      partUpdated(toolPart(other, "m", "call_9", "bash", toolState("pending"))),
      todoUpdated(other, [{ content: "x", status: "pending" }]),
      sessionError(other, unknownError("boom")),
      sessionDeleted(other),
    );
    await flush();
    expect(did.finishes).toEqual([]);
    expect(did.progresses).toEqual([]);
    expect(api.messageReads).toEqual([]);
    expect(task("t1")).toEqual(before);
  });

  it("follows several sessions independently", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    start("t2", "ses_two");
    api.answer(S, answered(S, PROMPT, "one"));
    feed(...promptTaken(S), ...promptTaken("ses_two"), sessionError("ses_two", unknownError("two failed")), sessionIdle(S));
    await flush();
    expect(task("t1")).toMatchObject({ status: "completed", result: "one" });
    expect(task("t2")).toMatchObject({ status: "error", error: "two failed" });
    expect(did.finishes).toHaveLength(2);
  });

  it("ignores late events for a terminal task", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    api.answer(S, answered(S, PROMPT, "done"));
    feed(...textRun(S, "done"));
    await flush();
    const finished = structuredClone(task("t1"));
    const progressCalls = did.progresses.length;
    expect(finished.status).toBe("completed");

    feed(
      sessionError(S, unknownError("late error")),
      sessionDeleted(S),
      busy(S),
      partUpdated(toolPart(S, "msg_a1", "call_late", "bash", toolState("running"))),
      partUpdated(textPart(S, "msg_a1", "late text")),
      todoUpdated(S, [{ content: "late", status: "pending" }]),
      statusIdle(S),
      sessionIdle(S),
    );
    await flush();
    expect(did.finishes).toHaveLength(1);
    expect(did.progresses).toHaveLength(progressCalls);
    expect(api.messageReads).toEqual([]);
    expect(task("t1")).toEqual(finished);
  });

  it("ignores a task ended by someone else (cancelled by request) while its session winds down", async () => {
    const { did, records, api, start, feed } = setup();
    start("t1", S);
    feed(...promptTaken(S));
    records.finish("t1", "cancelled", { error: "cancelled by request" });
    feed(sessionError(S, abortedError()), statusIdle(S), sessionIdle(S));
    await flush();
    expect(did.finishes).toHaveLength(1);
    expect(api.messageReads).toEqual([]);
  });

  it("stops routing after unfollow", async () => {
    const { did, api, start, feed, follower } = setup();
    start("t1", S);
    feed(...promptTaken(S));
    follower.unfollow(S);
    expect(follower.followedCount).toBe(0);
    feed(sessionError(S, unknownError("after unfollow")), sessionIdle(S));
    await flush();
    expect(did.finishes).toEqual([]);
    expect(api.messageReads).toEqual([]);
  });
});

describe("SessionFollower.resync", () => {
  it("does nothing (not even a status read) when no session is followed", async () => {
    const { api, resync } = setup();
    await resync(PROMPTED_AT + 60_000, true);
    expect(api.statusReads).toBe(0);
  });

  it("completes a session missing from statuses whose messages show a finished answer", async () => {
    const { did, api, start, resync } = setup();
    start("t1", S);
    api.answer(S, answered(S, PROMPT, "finished while we were away"));
    await resync(PROMPTED_AT + GRACE_MS + 1_000, false);
    expect(api.statusReads).toBe(1);
    expect(did.finishes).toEqual([
      { taskId: "t1", status: "completed", fields: { result: "finished while we were away" } },
    ]);
    expect(api.existsChecks).toEqual([]);
  });

  it("completes a taken-up session within the grace when its idle was missed", async () => {
    const { did, api, start, feed, resync } = setup();
    start("t1", S);
    feed(busy(S));
    api.answer(S, answered(S, PROMPT, "quick"));
    await resync(PROMPTED_AT + 1_000, false);
    expect(api.messageReads).toEqual([S]);
    expect(did.finishes.map((f) => f.status)).toEqual(["completed"]);
  });

  it("fails a session past the grace with no answer, naming the session", async () => {
    const { did, api, start, resync } = setup();
    start("t1", S);
    api.answer(S, promptOnly(S, PROMPT));
    await resync(PROMPTED_AT + GRACE_MS + 1, false);
    expect(did.finishes).toHaveLength(1);
    expect(did.finishes[0]!.status).toBe("error");
    expect(did.finishes[0]!.fields.error).toContain(S);
    expect(did.finishes[0]!.fields.error).not.toContain("no longer exists");
    expect(api.existsChecks).toEqual([S]);
  });

  it("fails a session that opencode no longer has (sessionExists false)", async () => {
    const { did, api, start, resync } = setup();
    start("t1", S);
    api.missing.add(S);
    await resync(PROMPTED_AT + GRACE_MS + 1_000, false);
    expect(did.finishes).toHaveLength(1);
    expect(did.finishes[0]!.status).toBe("error");
    expect(did.finishes[0]!.fields.error).toContain("no longer exists");
    expect(did.finishes[0]!.fields.error).toContain(S);
  });

  it("fails a session whose messages read answers 404", async () => {
    const { did, api, start, resync } = setup();
    start("t1", S);
    api.fail(S, new OpencodeRequestError(`Session not found: ${S}`, 404));
    await resync(PROMPTED_AT + GRACE_MS + 1_000, false);
    expect(did.finishes).toHaveLength(1);
    expect(did.finishes[0]!.fields.error).toContain("no longer exists");
  });

  it("leaves a session alone within the grace when the prompt was not taken up yet", async () => {
    const { did, api, start, resync } = setup();
    start("t1", S);
    await resync(PROMPTED_AT + GRACE_MS - 1, false);
    expect(api.statusReads).toBe(1);
    expect(api.messageReads).toEqual([]);
    expect(api.existsChecks).toEqual([]);
    expect(did.finishes).toEqual([]);
  });

  it("after a reconnect (all) reads a fresh session but does not fail it within the grace", async () => {
    const { did, api, start, resync } = setup();
    start("t1", S);
    api.answer(S, promptOnly(S, PROMPT));
    await resync(PROMPTED_AT + 500, true);
    expect(api.messageReads).toEqual([S]);
    expect(api.existsChecks).toEqual([]);
    expect(did.finishes).toEqual([]);
  });

  it("leaves busy sessions alone and counts them as taken up", async () => {
    const { did, api, start, feed, resync } = setup();
    start("t1", S);
    api.busy = { [S]: { type: "busy" } };
    await resync(PROMPTED_AT + GRACE_MS * 10, true);
    expect(api.messageReads).toEqual([]);
    expect(did.finishes).toEqual([]);

    // The resync saw it busy, so a following idle means done even without a busy event.
    api.answer(S, answered(S, PROMPT, "done"));
    feed(sessionIdle(S));
    await flush();
    expect(did.finishes.map((f) => f.status)).toEqual(["completed"]);
  });

  it("skips tasks not prompted yet", async () => {
    const { did, api, start, resync } = setup();
    start("t1", S, null);
    await resync(PROMPTED_AT + GRACE_MS * 10, true);
    expect(api.messageReads).toEqual([]);
    expect(did.finishes).toEqual([]);
  });

  it("does not fail a task when the messages read fails for a reason other than 404", async () => {
    const { did, api, start, resync, task } = setup();
    start("t1", S);
    api.fail(S, new OpencodeRequestError("opencode answered 500", 500));
    await resync(PROMPTED_AT + GRACE_MS + 1_000, false);
    expect(did.finishes).toEqual([]);
    expect(task("t1").status).toBe("running");

    // The next sweep, with opencode healthy again, finds the answer.
    api.answer(S, answered(S, PROMPT, "was fine all along"));
    await resync(PROMPTED_AT + GRACE_MS + 31_000, false);
    expect(did.finishes).toEqual([{ taskId: "t1", status: "completed", fields: { result: "was fine all along" } }]);
  });

  it("shares an idle's in-flight read instead of reading again", async () => {
    const { did, api, start, feed, resync } = setup();
    start("t1", S);
    const open = api.gate(S, answered(S, PROMPT, "done"));
    feed(busy(S), sessionIdle(S));
    const resynced = resync(PROMPTED_AT + GRACE_MS + 1_000, false);
    await flush();
    expect(api.messageReads).toEqual([S]);
    open();
    await resynced;
    expect(api.messageReads).toEqual([S]);
    expect(did.finishes.map((f) => f.status)).toEqual(["completed"]);
    expect(api.existsChecks).toEqual([]);
  });
});

/** One tool call as opencode streams it: pending (input not known yet), running, completed. */
function toolCall(callID: string, tool: string, input: Record<string, unknown>, sessionID = S): OpencodeEvent[] {
  return (["pending", "running", "completed"] as const).map((status) =>
    partUpdated(toolPart(sessionID, "msg_a1", callID, tool, toolState(status, input, "ok"))),
  );
}

describe("SessionFollower: provider retries", () => {
  it("shows a retry in progress, announced as retrying, with the next attempt as an ISO time", () => {
    const { did, start, feed, task } = setup();
    start("t1", S);
    feed(...promptTaken(S));
    const before = did.progresses.length;
    feed(retry(S, 1, "Provider is overloaded", T0 + 2_500));
    expect(did.progresses.slice(before)).toEqual([
      {
        taskId: "t1",
        progress: {
          tool_calls: 0,
          last_tool: null,
          last_message: null,
          retry: { attempt: 1, message: "Provider is overloaded", next_at: "2025-10-09T08:53:22.500Z" },
        },
        retrying: true,
      },
    ]);
    expect(new Date(T0 + 2_500).toISOString()).toBe("2025-10-09T08:53:22.500Z");
    expect(task("t1").status).toBe("running");
    expect(did.finishes).toEqual([]);
  });

  it("updates the retry on each attempt and keeps the rest of the progress", () => {
    const { did, start, feed, task } = setup();
    start("t1", S);
    feed(...promptTaken(S), ...toolCall("call_1", "read", { filePath: "src/config.ts" }));
    const before = did.progresses.length;
    feed(retry(S, 1, "Provider is overloaded"), retry(S, 2, "Rate limited", T0 + 10_000));
    expect(did.progresses.slice(before).map((p) => p.retrying)).toEqual([true, true]);
    expect(task("t1").progress).toMatchObject({
      tool_calls: 1,
      last_tool: "read",
      retry: { attempt: 2, message: "Rate limited", next_at: new Date(T0 + 10_000).toISOString() },
    });
  });

  it("clears the retry, once and as plain progress, when the session is busy again", () => {
    const { did, start, feed, task } = setup();
    start("t1", S);
    feed(...promptTaken(S));
    // Busy without a retry before it announces nothing.
    const quiet = did.progresses.length;
    feed(busy(S), busy(S));
    expect(did.progresses.length).toBe(quiet);

    feed(retry(S, 1), retry(S, 2));
    const before = did.progresses.length;
    feed(busy(S), busy(S), busy(S));
    const cleared = did.progresses.slice(before);
    expect(cleared).toHaveLength(1);
    expect(cleared[0]!.progress.retry).toBeNull();
    expect(cleared[0]!.retrying ?? false).toBe(false);
    expect(task("t1").progress.retry).toBeNull();
  });

  it("completes normally after a retry that succeeded", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    api.answer(S, answered(S, PROMPT, "done after a retry"));
    feed(retry(S, 1), ...textRun(S, "done after a retry"));
    await flush();
    expect(did.finishes).toEqual([{ taskId: "t1", status: "completed", fields: { result: "done after a retry" } }]);
    expect(task("t1").progress.retry).toBeNull();
  });
});

describe("SessionFollower: permission requests", () => {
  const asked = { request_id: "per_1", permission: "bash", patterns: ["rm -rf build"] };

  it("rejects by default, telling the model why, and records the decision", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    feed(...promptTaken(S), permissionAsked(S, "per_1", "bash", ["rm -rf build"]));
    await flush();
    expect(api.replies).toHaveLength(1);
    expect(api.replies[0]).toMatchObject({ requestID: "per_1", reply: "reject" });
    expect(api.replies[0]!.message).toContain("permissions.onAsk");
    expect(task("t1").progress.permission).toEqual({ ...asked, decision: "rejected" });
    expect(task("t1").status).toBe("running");

    // opencode echoes our own reply: nothing more to record.
    const before = did.progresses.length;
    feed(permissionReplied(S, "per_1", "reject"));
    expect(did.progresses.length).toBe(before);
    expect(api.replies).toHaveLength(1);
  });

  it("rejects under an explicit reject policy too", async () => {
    const { api, start, feed, task } = setup({ onPermission: "reject" });
    start("t1", S);
    feed(...promptTaken(S), permissionAsked(S, "per_1"));
    await flush();
    expect(api.replies.map((r) => r.reply)).toEqual(["reject"]);
    expect(task("t1").progress.permission?.decision).toBe("rejected");
  });

  it("allows once under allow, without a message", async () => {
    const { api, start, feed, task } = setup({ onPermission: "allow" });
    start("t1", S);
    feed(...promptTaken(S), permissionAsked(S, "per_1", "bash", ["rm -rf build"]));
    await flush();
    expect(api.replies).toEqual([{ requestID: "per_1", reply: "once", message: undefined }]);
    expect(task("t1").progress.permission).toEqual({ ...asked, decision: "allowed" });
  });

  it("leaves the request to a human under wait, and records the human's answer", async () => {
    const { did, api, start, feed, task } = setup({ onPermission: "wait" });
    start("t1", S);
    feed(...promptTaken(S), permissionAsked(S, "per_1", "bash", ["rm -rf build"]));
    await flush();
    expect(api.replies).toEqual([]);
    expect(task("t1").progress.permission).toEqual({ ...asked, decision: "waiting" });
    expect(task("t1").status).toBe("running");

    // A reply to some other request changes nothing.
    const before = did.progresses.length;
    feed(permissionReplied(S, "per_other", "reject"));
    expect(did.progresses.length).toBe(before);
    expect(task("t1").progress.permission?.decision).toBe("waiting");

    feed(permissionReplied(S, "per_1", "always"));
    expect(task("t1").progress.permission).toEqual({ ...asked, decision: "allowed" });
    expect(api.replies).toEqual([]);
  });

  it("records a human's rejection of a waiting request", () => {
    const { start, feed, task } = setup({ onPermission: "wait" });
    start("t1", S);
    feed(...promptTaken(S), permissionAsked(S, "per_1"), permissionReplied(S, "per_1", "reject"));
    expect(task("t1").progress.permission?.decision).toBe("rejected");
  });

  it("keeps the decision and the task when the reply cannot be sent", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    api.replyError = new OpencodeUnreachableError("opencode is unreachable at http://127.0.0.1:4096");
    feed(...promptTaken(S), permissionAsked(S, "per_1"));
    await flush();
    expect(api.replies).toHaveLength(1);
    expect(task("t1").progress.permission?.decision).toBe("rejected");
    expect(task("t1").status).toBe("running");
    expect(did.finishes).toEqual([]);
  });

  it("answers each request and shows the latest", async () => {
    const { api, start, feed, task } = setup({ onPermission: "allow" });
    start("t1", S);
    feed(...promptTaken(S), permissionAsked(S, "per_1", "bash"), permissionAsked(S, "per_2", "edit", ["src/a.ts"]));
    await flush();
    expect(api.replies.map((r) => r.requestID)).toEqual(["per_1", "per_2"]);
    expect(task("t1").progress.permission).toEqual({
      request_id: "per_2",
      permission: "edit",
      patterns: ["src/a.ts"],
      decision: "allowed",
    });
  });
});

describe("SessionFollower: todo continuations", () => {
  const TODOS = [
    { content: "read config", status: "completed" },
    { content: "write tests", status: "in_progress" },
    { content: "fix lint", status: "pending" },
  ];
  const INCOMPLETE = TODOS.slice(1);
  const LIST = "Incomplete todos:\n- [in_progress] write tests\n- [pending] fix lint";

  /** The run a continuation starts: taken up, a new assistant message, then idle twice (as opencode does). */
  const nextRun = (assistantID: string): OpencodeEvent[] => [
    busy(S),
    messageUpdated(assistantMessage(S, { id: assistantID, completed: false })),
    busy(S),
    statusIdle(S),
    sessionIdle(S),
  ];

  it("sends todoContinuations continue prompts (default 2), then completes with the incomplete todos listed", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    api.answer(S, answered(S, PROMPT, "first pass"));
    feed(...promptTaken(S), todoUpdated(S, TODOS), statusIdle(S), sessionIdle(S));
    await flush();
    expect(did.prompts).toEqual([{ taskId: "t1", text: TODO_CONTINUE_PROMPT }]);
    expect(task("t1").progress.todo_continuations).toBe(1);
    expect(task("t1").status).toBe("running");
    expect(did.finishes).toEqual([]);

    api.answer(S, answered(S, PROMPT, "second pass"));
    feed(...nextRun("msg_a2"));
    await flush();
    expect(did.prompts.map((p) => p.text)).toEqual([TODO_CONTINUE_PROMPT, TODO_CONTINUE_PROMPT]);
    expect(task("t1").progress.todo_continuations).toBe(2);
    expect(did.finishes).toEqual([]);

    api.answer(S, answered(S, PROMPT, "third pass"));
    feed(...nextRun("msg_a3"));
    await flush();
    expect(did.prompts).toHaveLength(2);
    expect(did.finishes).toEqual([{ taskId: "t1", status: "completed", fields: { result: `third pass\n\n${LIST}` } }]);
    expect(task("t1").progress).toMatchObject({
      todo_continuations: 2,
      incomplete_todos: INCOMPLETE,
      last_message: "third pass",
    });
    expect(api.messageReads).toEqual([S, S, S]);
  });

  it("follows the policy's count", async () => {
    const { did, api, start, feed, task } = setup({ todoContinuations: 1 });
    start("t1", S);
    api.answer(S, answered(S, PROMPT, "first pass"));
    feed(...promptTaken(S), todoUpdated(S, TODOS), sessionIdle(S));
    await flush();
    expect(did.prompts).toHaveLength(1);

    api.answer(S, answered(S, PROMPT, "second pass"));
    feed(...nextRun("msg_a2"));
    await flush();
    expect(did.prompts).toHaveLength(1);
    expect(task("t1")).toMatchObject({ status: "completed", result: `second pass\n\n${LIST}` });
  });

  it("ignores the finished run's duplicate idles after a continuation", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    api.answer(S, answered(S, PROMPT, "first pass"));
    feed(...promptTaken(S), todoUpdated(S, TODOS), sessionIdle(S));
    await flush();
    expect(did.prompts).toHaveLength(1);
    expect(api.messageReads).toEqual([S]);

    // The old run's idles arrive again before the continuation is taken up.
    feed(statusIdle(S), sessionIdle(S), statusIdle(S));
    await flush();
    expect(api.messageReads).toEqual([S]);
    expect(did.prompts).toHaveLength(1);
    expect(did.finishes).toEqual([]);
    expect(task("t1").status).toBe("running");
  });

  it("completes with the plain answer once a continuation finishes the todos", async () => {
    const { did, api, start, feed, task } = setup();
    start("t1", S);
    api.answer(S, answered(S, PROMPT, "first pass"));
    feed(...promptTaken(S), todoUpdated(S, TODOS), sessionIdle(S));
    await flush();

    api.answer(S, answered(S, PROMPT, "all finished"));
    feed(todoUpdated(S, TODOS.map((t) => ({ ...t, status: "completed" }))), ...nextRun("msg_a2"));
    await flush();
    expect(did.prompts).toHaveLength(1);
    expect(did.finishes).toEqual([{ taskId: "t1", status: "completed", fields: { result: "all finished" } }]);
    expect(task("t1").progress.incomplete_todos).toBeUndefined();
    expect(task("t1").progress.todo_continuations).toBe(1);
  });

  it("counts the continuations already recorded in progress (a task followed again after a restart)", async () => {
    const { did, records, api, follower, start, feed, task } = setup();
    start("t1", S);
    follower.unfollow(S);
    records.progress("t1", { ...task("t1").progress, todo_continuations: 2 });
    follower.follow("t1", S);
    api.answer(S, answered(S, PROMPT, "resumed pass"));
    feed(...promptTaken(S), todoUpdated(S, TODOS), sessionIdle(S));
    await flush();
    expect(did.prompts).toEqual([]);
    expect(task("t1")).toMatchObject({ status: "completed", result: `resumed pass\n\n${LIST}` });
  });

  it("a sweep that sends a continuation does not then fail the task as idle without an answer", async () => {
    const { did, api, start, feed, task, resync } = setup();
    start("t1", S);
    // The idle was missed; the sweep finds the finished run long after the prompt.
    api.answer(S, answered(S, PROMPT, "first pass"));
    feed(todoUpdated(S, TODOS));
    await resync(PROMPTED_AT + GRACE_MS + 1_000, false);
    expect(did.prompts).toHaveLength(1);
    expect(task("t1").prompted_at).toBe(PROMPTED_AT + GRACE_MS + 1_000);
    expect(api.existsChecks).toEqual([]);
    expect(did.finishes).toEqual([]);
    expect(task("t1").status).toBe("running");
  });

  // A race once found here (#settle + resync): after a continuation prompt and before the new run writes
  // its first assistant message, outcomeOf() still sees the previous run's finished answer. A resync(all)
  // in that window (a reconnect ~1 s after the continuation) settles on it: with continuations left it
  // sends another continuation at once; with none left it completes the task while the continued run goes on.
  it("a resync right after a continuation does not settle on the previous run's answer", async () => {
    const { did, api, start, feed, task, resync } = setup();
    start("t1", S);
    const firstRun = answered(S, PROMPT, "first pass");
    api.answer(S, firstRun);
    feed(...promptTaken(S), todoUpdated(S, TODOS), sessionIdle(S));
    await flush();
    expect(did.prompts).toHaveLength(1);

    // opencode has stored the continuation prompt; the new run has not started (not busy yet).
    api.answer(S, [
      ...firstRun,
      { info: userMessage(S, "msg_user2"), parts: [textPart(S, "msg_user2", TODO_CONTINUE_PROMPT)] },
    ]);
    await resync(PROMPTED_AT + 1_000, true);
    expect(did.prompts).toHaveLength(1);
    expect(did.finishes).toEqual([]);
    expect(task("t1").status).toBe("running");
  });
});

describe("SessionFollower: runaway guards", () => {
  it("stops a task past maxToolCalls, once, naming the limit, and ignores tool events while it aborts", () => {
    const { did, start, feed, task } = setup({ maxToolCalls: 3 });
    start("t1", S);
    feed(
      ...promptTaken(S),
      ...toolCall("call_1", "read", { filePath: "a.ts" }),
      ...toolCall("call_2", "read", { filePath: "b.ts" }),
      ...toolCall("call_3", "grep", { pattern: "parse" }),
      partUpdated(toolPart(S, "msg_a1", "call_3", "grep", toolState("running", { pattern: "parse" }))),
    );
    expect(did.stops).toEqual([]);
    expect(task("t1").progress.tool_calls).toBe(3);

    feed(partUpdated(toolPart(S, "msg_a1", "call_4", "read", toolState("pending"))));
    expect(did.stops).toHaveLength(1);
    expect(did.stops[0]!.taskId).toBe("t1");
    expect(did.stops[0]!.reason).toContain("limits.maxToolCalls");
    expect(did.stops[0]!.reason).toContain("3");
    expect(task("t1").progress.tool_calls).toBe(4);

    // The session keeps streaming until the abort lands.
    feed(
      ...toolCall("call_4", "read", { filePath: "c.ts" }),
      ...toolCall("call_5", "read", { filePath: "d.ts" }),
      ...toolCall("call_6", "bash", { command: "ls" }),
    );
    expect(did.stops).toHaveLength(1);
    expect(task("t1").progress.tool_calls).toBe(4);
    // Ending the task is the did's job (abort, then error with the reason).
    expect(did.finishes).toEqual([]);
  });

  it("allows 500 tool calls by default and stops the 501st", () => {
    const { did, start, feed } = setup();
    start("t1", S);
    feed(...promptTaken(S));
    for (let i = 1; i <= 500; i++) feed(...toolCall(`call_${i}`, "read", { filePath: `f${i}.ts` }));
    expect(did.stops).toEqual([]);
    feed(...toolCall("call_501", "read", { filePath: "f501.ts" }));
    expect(did.stops).toHaveLength(1);
    expect(did.stops[0]!.reason).toContain("500");
  });

  it("stops the same tool with the same input maxRepeatedToolCalls times in a row, once, when its input is known", () => {
    const { did, start, feed } = setup({ maxRepeatedToolCalls: 3 });
    start("t1", S);
    const input = { command: "npm test" };
    feed(...promptTaken(S), ...toolCall("call_1", "bash", input), ...toolCall("call_2", "bash", input));
    expect(did.stops).toEqual([]);

    // Pending carries no input yet: the third call counts once it runs.
    feed(partUpdated(toolPart(S, "msg_a1", "call_3", "bash", toolState("pending", input))));
    expect(did.stops).toEqual([]);
    feed(partUpdated(toolPart(S, "msg_a1", "call_3", "bash", toolState("running", input))));
    expect(did.stops).toHaveLength(1);
    const { reason } = did.stops[0]!;
    expect(reason).toContain("limits.maxRepeatedToolCalls");
    expect(reason).toContain("bash");
    expect(reason).toContain("3 times");
    expect(reason).toContain(JSON.stringify(input));

    feed(
      partUpdated(toolPart(S, "msg_a1", "call_3", "bash", toolState("completed", input, "ok"))),
      ...toolCall("call_4", "bash", input),
      ...toolCall("call_5", "bash", input),
    );
    expect(did.stops).toHaveLength(1);
  });

  it("trips at 20 identical calls by default, not at 19", () => {
    const { did, start, feed } = setup();
    start("t1", S);
    feed(...promptTaken(S));
    for (let i = 1; i <= 19; i++) feed(...toolCall(`call_${i}`, "read", { filePath: "src/config.ts" }));
    expect(did.stops).toEqual([]);
    feed(...toolCall("call_20", "read", { filePath: "src/config.ts" }));
    expect(did.stops).toHaveLength(1);
    expect(did.stops[0]!.reason).toContain("limits.maxRepeatedToolCalls");
  });

  it("counts a call once for the repeat check, however many updates carry its input", () => {
    const { did, start, feed } = setup({ maxRepeatedToolCalls: 3 });
    start("t1", S);
    const input = { command: "npm test" };
    const running = (callID: string) => partUpdated(toolPart(S, "msg_a1", callID, "bash", toolState("running", input)));
    feed(...promptTaken(S), running("call_1"), running("call_1"), running("call_1"), running("call_2"), running("call_2"));
    feed(...toolCall("call_1", "bash", input), ...toolCall("call_2", "bash", input));
    expect(did.stops).toEqual([]);
  });

  it("does not stop varied calls: other inputs, another tool, or a repeat broken by another call", () => {
    const { did, start, feed, task } = setup({ maxRepeatedToolCalls: 3 });
    start("t1", S);
    feed(...promptTaken(S));
    let n = 0;
    const call = (tool: string, input: Record<string, unknown>) => feed(...toolCall(`call_${++n}`, tool, input));
    for (let i = 0; i < 5; i++) {
      call("bash", { command: "npm test" });
      call("bash", { command: "npm run lint" });
    }
    for (let i = 0; i < 5; i++) {
      call("read", { filePath: "a.ts" });
      call("grep", { filePath: "a.ts" });
    }
    call("bash", { command: "ls" });
    call("bash", { command: "ls" });
    call("read", { filePath: "a.ts" });
    call("bash", { command: "ls" });
    call("bash", { command: "ls" });
    expect(did.stops).toEqual([]);
    expect(task("t1").progress.tool_calls).toBe(25);
  });
});

describe("SessionFollower.resync: stalls", () => {
  const STALL_MS = DEFAULT_POLICY.stallMs;

  it("marks a busy session silent for stallMs as stalled, once, when opencode still has it; the next event clears it", async () => {
    const { did, api, start, feed, task, resync } = setup();
    start("t1", S);
    feed(...promptTaken(S));
    api.busy = { [S]: { type: "busy" } };

    await resync(PROMPTED_AT + STALL_MS - 1, false);
    expect(api.existsChecks).toEqual([]);
    expect(task("t1").progress.stalled_since ?? null).toBeNull();

    await resync(PROMPTED_AT + STALL_MS, false);
    expect(api.existsChecks).toEqual([S]);
    expect(task("t1").progress.stalled_since).toBe(new Date(PROMPTED_AT).toISOString());
    expect(api.messageReads).toEqual([]);
    expect(did.finishes).toEqual([]);
    expect(task("t1").status).toBe("running");

    const announced = did.progresses.length;
    await resync(PROMPTED_AT + STALL_MS + 30_000, false);
    expect(did.progresses.length).toBe(announced);
    expect(task("t1").progress.stalled_since).toBe(new Date(PROMPTED_AT).toISOString());
    expect(did.finishes).toEqual([]);

    feed(busy(S));
    expect(task("t1").progress.stalled_since).toBeNull();
    // Silence is measured from that event now.
    const checks = api.existsChecks.length;
    await resync(PROMPTED_AT + STALL_MS + 60_000, false);
    expect(api.existsChecks).toHaveLength(checks);
  });

  it("fails a busy, silent session that opencode no longer has (a stale busy status)", async () => {
    const { did, api, start, feed, resync } = setup();
    start("t1", S);
    feed(...promptTaken(S));
    api.busy = { [S]: { type: "busy" } };
    api.missing.add(S);
    await resync(PROMPTED_AT + STALL_MS, false);
    expect(did.finishes).toHaveLength(1);
    expect(did.finishes[0]!.status).toBe("error");
    expect(did.finishes[0]!.fields.error).toContain("no longer exists");
    expect(did.finishes[0]!.fields.error).toContain(S);
  });

  it("follows the policy's stallMs", async () => {
    const { api, start, feed, task, resync } = setup({ stallMs: 60_000 });
    start("t1", S);
    feed(...promptTaken(S));
    api.busy = { [S]: { type: "busy" } };
    await resync(PROMPTED_AT + 59_999, false);
    expect(api.existsChecks).toEqual([]);
    await resync(PROMPTED_AT + 60_000, false);
    expect(api.existsChecks).toEqual([S]);
    expect(task("t1").progress.stalled_since).toBe(new Date(PROMPTED_AT).toISOString());
  });

  // Once a bug (src/tasks/follower.ts, #apply): the stalled_since clear is written, then the "text" case (and
  // "permission-replied") writes `{ ...task.progress, ... }` from the task read before the clear, putting
  // the old stalled_since back. A stalled model that resumes by streaming text stays marked as stalled.
  it("assistant text after a stall clears stalled_since", async () => {
    const { api, start, feed, task, resync } = setup();
    start("t1", S);
    feed(...promptTaken(S));
    api.busy = { [S]: { type: "busy" } };
    await resync(PROMPTED_AT + STALL_MS, false);
    expect(task("t1").progress.stalled_since).toBeTruthy();

    feed(partUpdated(textPart(S, "msg_a1", "Still reading the config")));
    expect(task("t1").progress.last_message).toBe("Still reading the config");
    expect(task("t1").progress.stalled_since).toBeNull();
  });
});

describe("SessionFollower.resync: sessions being aborted", () => {
  it("skips an idle session we are aborting: no read, no exists check, no verdict", async () => {
    const { did, api, start, feed, follower, resync } = setup();
    start("t1", S);
    feed(...promptTaken(S));
    follower.markAborting(S);
    api.answer(S, promptOnly(S, PROMPT));
    await resync(PROMPTED_AT + GRACE_MS * 10, true);
    expect(api.statusReads).toBe(1);
    expect(api.messageReads).toEqual([]);
    expect(api.existsChecks).toEqual([]);
    expect(did.finishes).toEqual([]);
  });

  it("skips a busy, silent session we are aborting (no stall check)", async () => {
    const { did, api, start, feed, follower, task, resync } = setup();
    start("t1", S);
    feed(...promptTaken(S));
    follower.markAborting(S);
    api.busy = { [S]: { type: "busy" } };
    api.missing.add(S);
    await resync(PROMPTED_AT + DEFAULT_POLICY.stallMs * 2, false);
    expect(api.existsChecks).toEqual([]);
    expect(did.finishes).toEqual([]);
    expect(task("t1").progress.stalled_since ?? null).toBeNull();
  });
});
