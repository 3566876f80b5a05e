import { describe, expect, it } from "vitest";
import type { SessionMessage } from "../../src/opencode/client.js";
import {
  DEFAULT_TRANSCRIPT_LIMITS,
  clip,
  outcomeOf,
  textOf,
  toTranscript,
  type TranscriptEntry,
} from "../../src/opencode/transcript.js";
import {
  abortedError,
  apiError,
  assistantMessage,
  stepFinish,
  stepStart,
  textPart,
  toolPart,
  toolState,
  userMessage,
  type AssistantOptions,
} from "./opencode-fixtures.js";

const S = "ses_transcript";

const user = (text: string, id = "msg_user"): SessionMessage => ({
  info: userMessage(S, id),
  parts: [textPart(S, id, text)],
});

function assistant(parts: Array<(id: string) => SessionMessage["parts"][number]>, options: AssistantOptions = {}): SessionMessage {
  const info = assistantMessage(S, options);
  return { info, parts: parts.map((make) => make(info.id)) };
}

const text =
  (value: string, extra: { synthetic?: boolean; ignored?: boolean } = {}) =>
  (id: string) =>
    textPart(S, id, value, extra);
const start = () => (id: string) => stepStart(S, id);
const finish = (reason: string) => (id: string) => stepFinish(S, id, reason);
const tool =
  (callID: string, name: string, state: ReturnType<typeof toolState>) =>
  (id: string) =>
    toolPart(S, id, callID, name, state);

describe("outcomeOf", () => {
  it("is pending with no messages or only the user prompt", () => {
    expect(outcomeOf([])).toEqual({ kind: "pending" });
    expect(outcomeOf([user("do it")])).toEqual({ kind: "pending" });
  });

  it("is pending while the last assistant step is unfinished", () => {
    const messages = [user("do it"), assistant([start(), text("working on")], { completed: false })];
    expect(outcomeOf(messages)).toEqual({ kind: "pending" });
  });

  it("is pending after a tool-calls step: another step follows", () => {
    const messages = [
      user("do it"),
      assistant([start(), text("Let me look."), tool("call_1", "bash", toolState("completed", {}, "x")), finish("tool-calls")], {
        finish: "tool-calls",
      }),
    ];
    expect(outcomeOf(messages)).toEqual({ kind: "pending" });
  });

  it("is completed with the last step's text", () => {
    const messages = [
      user("do it"),
      assistant([start(), tool("call_1", "read", toolState("completed", {}, "file")), finish("tool-calls")], { finish: "tool-calls" }),
      assistant([start(), text("Done: the bug is in parse()."), finish("stop")], { finish: "stop" }),
    ];
    expect(outcomeOf(messages)).toEqual({ kind: "completed", text: "Done: the bug is in parse()." });
  });

  it("joins the step's text parts and leaves out synthetic and ignored ones", () => {
    const messages = [
      user("do it"),
      assistant([text("part one"), text("injected", { synthetic: true }), text("skipped", { ignored: true }), text("part two  ")], {
        finish: "stop",
      }),
    ];
    expect(outcomeOf(messages)).toEqual({ kind: "completed", text: "part one\npart two" });
  });

  it("falls back to an earlier step's text when the final step wrote none", () => {
    const messages = [
      user("do it"),
      assistant([start(), text("Here is the summary."), tool("call_1", "write", toolState("completed", {}, "ok")), finish("tool-calls")], {
        finish: "tool-calls",
      }),
      assistant([start(), text("   "), finish("stop")], { finish: "stop" }),
    ];
    expect(outcomeOf(messages)).toEqual({ kind: "completed", text: "Here is the summary." });
  });

  it("uses the latest earlier text, not the first", () => {
    const messages = [
      user("do it"),
      assistant([text("older text")], { finish: "tool-calls" }),
      assistant([text("newer text")], { finish: "tool-calls" }),
      assistant([start(), finish("stop")], { finish: "stop" }),
    ];
    expect(outcomeOf(messages)).toEqual({ kind: "completed", text: "newer text" });
  });

  it("never takes the user's prompt as the answer", () => {
    const messages = [user("the prompt text"), assistant([start(), finish("stop")], { finish: "stop" })];
    expect(outcomeOf(messages)).toEqual({ kind: "completed", text: "" });
  });

  it("is an error when the last step failed, with the provider's message", () => {
    const messages = [user("do it"), assistant([], { error: apiError("rate limited", 429) })];
    const outcome = outcomeOf(messages);
    expect(outcome.kind).toBe("error");
    if (outcome.kind !== "error") return;
    expect(outcome.aborted).toBe(false);
    expect(outcome.message).toContain("rate limited");
    expect(outcome.message).toContain("429");
  });

  it("is an error even when the failed step has no completed time", () => {
    const messages = [user("do it"), assistant([], { completed: false, error: apiError("boom", 500) })];
    expect(outcomeOf(messages).kind).toBe("error");
  });

  it("marks an aborted step as aborted", () => {
    const messages = [user("do it"), assistant([text("partial")], { error: abortedError() })];
    const outcome = outcomeOf(messages);
    expect(outcome).toMatchObject({ kind: "error", aborted: true });
    if (outcome.kind === "error") expect(outcome.message).toContain("Aborted");
  });

  it("looks only at the last assistant step: an earlier error that was retried does not count", () => {
    const messages = [
      user("do it"),
      assistant([], { error: apiError("transient", 500) }),
      assistant([text("recovered")], { finish: "stop" }),
    ];
    expect(outcomeOf(messages)).toEqual({ kind: "completed", text: "recovered" });
  });
});

describe("textOf", () => {
  it("takes only non-synthetic, non-ignored text parts, trimmed", () => {
    const message = assistant([
      start(),
      text("  a  "),
      tool("call_1", "bash", toolState("completed", {}, "tool output")),
      text("b", { synthetic: true }),
      text("c"),
    ]);
    expect(textOf(message)).toBe("a  \nc");
  });
});

describe("toTranscript", () => {
  const roomy = { maxText: 10_000, maxToolIo: 10_000, maxTotal: 1_000_000 };

  it("lists user and assistant text and tool calls with status, input and output, in order", () => {
    const messages = [
      user("find the bug"),
      assistant([
        start(),
        text("Looking."),
        tool("call_1", "bash", toolState("completed", { command: "ls" }, "a.ts\nb.ts")),
        tool("call_2", "read", toolState("error", { path: "/nope" }, "no such file")),
        tool("call_3", "grep", toolState("running", { pattern: "x" })),
        tool("call_4", "glob", toolState("pending", {})),
        finish("tool-calls"),
      ]),
      assistant([text("Found it.")], { finish: "stop" }),
    ];
    const { entries, omitted } = toTranscript(messages, roomy);
    expect(omitted).toBe(0);
    expect(entries).toEqual<TranscriptEntry[]>([
      { role: "user", type: "text", text: "find the bug" },
      { role: "assistant", type: "text", text: "Looking." },
      { role: "assistant", type: "tool", tool: "bash", status: "completed", input: '{"command":"ls"}', output: "a.ts\nb.ts" },
      { role: "assistant", type: "tool", tool: "read", status: "error", input: '{"path":"/nope"}', output: "no such file" },
      { role: "assistant", type: "tool", tool: "grep", status: "running", input: '{"pattern":"x"}' },
      { role: "assistant", type: "tool", tool: "glob", status: "pending", input: "{}" },
      { role: "assistant", type: "text", text: "Found it." },
    ]);
  });

  it("leaves out synthetic and blank text and step markers", () => {
    const messages = [user("q"), assistant([start(), text("   "), text("injected", { synthetic: true }), text("real"), finish("stop")])];
    expect(toTranscript(messages, roomy).entries).toEqual([
      { role: "user", type: "text", text: "q" },
      { role: "assistant", type: "text", text: "real" },
    ]);
  });

  it("adds a step's error as an entry", () => {
    const messages = [user("q"), assistant([text("partial")], { error: apiError("provider down", 503) })];
    const { entries } = toTranscript(messages, roomy);
    expect(entries).toHaveLength(3);
    expect(entries[2]!.role).toBe("assistant");
    expect(entries[2]!.text).toMatch(/^\[error\] /);
    expect(entries[2]!.text).toContain("provider down");
  });

  it("clips long text and tool input/output per entry to their own limits", () => {
    const long = "t".repeat(5_000);
    const messages = [
      user(long),
      assistant([tool("call_1", "bash", toolState("completed", { command: "c".repeat(3_000) }, "o".repeat(3_000)))]),
    ];
    const limits = { maxText: 300, maxToolIo: 120, maxTotal: 1_000_000 };
    const { entries } = toTranscript(messages, limits);
    expect(entries[0]!.text).toBe(clip(long, 300));
    expect(entries[0]!.text!.length).toBeLessThanOrEqual(300);
    expect(entries[1]!.input!.length).toBeLessThanOrEqual(120);
    expect(entries[1]!.output!.length).toBeLessThanOrEqual(120);
    expect(entries[1]!.output).toBe(clip("o".repeat(3_000), 120));
    expect(entries[1]!.input!.startsWith('{"command":"ccc')).toBe(true);
  });

  it("drops the oldest entries first to stay within the total, and counts them", () => {
    const messages: SessionMessage[] = [];
    for (let i = 0; i < 20; i++) {
      messages.push(user(`question ${i} ${"q".repeat(80)}`, `msg_u${i}`));
      messages.push(assistant([text(`answer ${i} ${"a".repeat(80)}`)], { finish: "stop" }));
    }
    const all = toTranscript(messages, roomy);
    expect(all.omitted).toBe(0);
    expect(all.entries).toHaveLength(40);

    const maxTotal = 1_000;
    const { entries, omitted } = toTranscript(messages, { ...roomy, maxTotal });
    expect(omitted).toBeGreaterThan(0);
    expect(omitted + entries.length).toBe(40);
    // What is kept is exactly the newest entries, in order, within the budget...
    expect(entries).toEqual(all.entries.slice(omitted));
    const size = (list: TranscriptEntry[]): number => list.reduce((sum, e) => sum + JSON.stringify(e).length, 0);
    expect(size(entries)).toBeLessThanOrEqual(maxTotal);
    // ...and as many as fit: one more (older) entry would not.
    expect(size(all.entries.slice(omitted - 1))).toBeGreaterThan(maxTotal);
    expect(entries.at(-1)!.text).toContain("answer 19");
  });

  it("omits everything when even the newest entry is over the total", () => {
    const messages = [user("x".repeat(500))];
    expect(toTranscript(messages, { maxText: 10_000, maxToolIo: 10_000, maxTotal: 100 })).toEqual({ entries: [], omitted: 1 });
  });

  it("has sane default limits (text < total, tool io < text)", () => {
    const { maxText, maxToolIo, maxTotal } = DEFAULT_TRANSCRIPT_LIMITS;
    expect(maxToolIo).toBeLessThanOrEqual(maxText);
    expect(maxText).toBeLessThan(maxTotal);
    const { entries } = toTranscript([user("y".repeat(maxText * 2))]);
    expect(entries[0]!.text!.length).toBeLessThanOrEqual(maxText);
  });
});

describe("clip", () => {
  it("leaves text up to the limit alone", () => {
    expect(clip("", 10)).toBe("");
    expect(clip("short", 10)).toBe("short");
    expect(clip("x".repeat(100), 100)).toBe("x".repeat(100));
  });

  it("keeps the head and the tail with a marker saying how much was cut", () => {
    const original = `${"H".repeat(1_000)}${"T".repeat(1_000)}`;
    const max = 200;
    const clipped = clip(original, max);
    expect(clipped.length).toBeLessThanOrEqual(max);
    expect(clipped.startsWith("HHHH")).toBe(true);
    expect(clipped.endsWith("TTTT")).toBe(true);

    const marker = /\n\[… (\d+) characters cut …\]\n/.exec(clipped);
    expect(marker).not.toBeNull();
    const [head, tail] = clipped.split(marker![0]);
    expect(head).toMatch(/^H+$/);
    expect(tail).toMatch(/^T+$/);
    // The marker's count is exactly what is missing, and head and tail are about even.
    expect(Number(marker![1])).toBe(original.length - head!.length - tail!.length);
    expect(Math.abs(head!.length - tail!.length)).toBeLessThanOrEqual(1);
    expect(head!.length + tail!.length).toBeGreaterThan(max / 2);
  });

  it("stays within the limit for a very long text", () => {
    const clipped = clip("z".repeat(2_000_000), 500);
    expect(clipped.length).toBeLessThanOrEqual(500);
    expect(clipped).toContain(`${2_000_000 - (clipped.match(/z/g) ?? []).length} characters cut`);
  });
});
