import { describe, expect, it } from "vitest";
import { toMcpTask } from "../../src/mcp/mcp-tasks.js";
import { channelEvent, taskLogMessage } from "../../src/mcp/notifications.js";
import { parentPromptText, recordText, wakeText } from "../../src/notify/parent-prompt.js";
import { toTranscript, type TranscriptEntry } from "../../src/opencode/transcript.js";
import { createTask, transition, type Task, type TaskProgress, type TaskStatus } from "../../src/tasks/task.js";
import { keyProgress, oneLine, statusMessage, taskLine, taskReport, taskSentence } from "../../src/tasks/task-text.js";
import { assistantMessage, textPart, toolPart, toolState, userMessage } from "./opencode-fixtures.js";

const T = 1_700_000_000_000;
const NO_QUEUE = { queuePosition: () => null };

function task(id: string, description: string): Task {
  return createTask(id, { owner: "local", description, prompt: "go", agent: "explore", model: null, parent_session_id: "ses_parent", timeout_ms: null }, T);
}

/** A task that ran from T + 1 s and ended `ms` later (or, for cancelled/error without `ran`, never started). */
function ended(status: Exclude<TaskStatus, "queued" | "running">, fields: { result?: string | null; error?: string | null }, ms: number | null = 2_500): Task {
  const queued = task("bg_1", "Map the config loader");
  if (ms === null) return transition(queued, status, T + 500, fields)!;
  const running = { ...transition(queued, "running", T + 1_000)!, session_id: "ses_child" };
  return transition(running, status, T + 1_000 + ms, fields)!;
}

const running = (progress: Partial<TaskProgress>): Task => ({
  ...transition(task("bg_2", "Audit the queue"), "running", T)!,
  session_id: "ses_run",
  progress: { tool_calls: 0, last_tool: null, last_message: null, ...progress },
});

describe("the sentence of how a task ended", () => {
  const cases: Array<[string, Task, string]> = [
    ["completed", ended("completed", { result: "All good." }), 'Task bg_1 "Map the config loader" (agent explore) completed in 2.5 s.'],
    ["failed", ended("error", { error: "APIError: 429" }), 'Task bg_1 "Map the config loader" (agent explore) failed after 2.5 s: APIError: 429.'],
    ["failed at once", ended("error", { error: "no slot" }, null), 'Task bg_1 "Map the config loader" (agent explore) failed before it started: no slot.'],
    ["cancelled", ended("cancelled", { error: "cancelled by request" }), 'Task bg_1 "Map the config loader" (agent explore) was cancelled after 2.5 s (cancelled by request).'],
    ["cancelled while queued", ended("cancelled", { error: null }, null), 'Task bg_1 "Map the config loader" (agent explore) was cancelled before it started.'],
  ];

  it.each(cases)("%s: one wording", (_, t, sentence) => {
    expect(taskSentence(t)).toBe(sentence);
  });

  it.each(cases)("%s: the same sentence in the parent prompt, the channel, the log, background_output and the toast's source", (_, t, sentence) => {
    expect(parentPromptText(t)).toContain(`] ${sentence}\n`);
    expect(recordText(t)).toContain(`] ${sentence}\n`);
    expect(wakeText(t, [ended("completed", { result: "x" })])).toContain(`] ${sentence}\n`);
    expect(channelEvent(t).content.split("\n")[0]).toBe(sentence);
    expect(taskReport(t).split("\n")[0]).toBe(sentence);
    // A log line is led by the id alone: only a message about that one task starts "Task <id> ".
    expect(taskLogMessage({ event: `task.${t.status}`, task: t }, NO_QUEUE)!.data.message).toMatch(new RegExp(`^${escape(sentence.replace(/^Task /, ""))}`));
    // MCP Tasks: the same clause, without the subject the task already is.
    expect(sentence).toContain(toMcpTask(t, NO_QUEUE).statusMessage!);
  });

  it("the parent prompt and the channel give the same preview, bounded, and the same way to read the output", () => {
    const t = ended("completed", { result: `${"word ".repeat(100)}THE-END` });
    const channel = channelEvent(t).content;
    expect(parentPromptText(t)).toBe(`[BACKGROUND TASK COMPLETED] ${channel}`);
    expect(channel).not.toContain("THE-END");
    expect(channel).toMatch(/\nPreview: word word .*…\nRead the full output with background_output \{"task_id": "bg_1"\}\.$/);
  });
});

describe("background_output's text carries what its structure carries", () => {
  it("full: the transcript, as readable lines with roles, texts, tools, their status, input and output", () => {
    const s = "ses_child";
    const { entries, omitted } = toTranscript([
      { info: userMessage(s, "m1"), parts: [textPart(s, "m1", "Find the loader")] },
      {
        info: assistantMessage(s, { id: "m2" }),
        parts: [
          toolPart(s, "m2", "call_1", "grep", toolState("completed", { pattern: "loadConfig" }, "src/config.ts:12")),
          textPart(s, "m2", "It is in src/config.ts."),
        ],
      },
    ]);
    const text = taskReport(ended("completed", { result: "It is in src/config.ts." }), { transcript: { entries, omitted } });
    expect(text).toContain("[user] Find the loader");
    expect(text).toMatch(/\[assistant\] tool grep \(completed\)\n {2}input: \{"pattern":"loadConfig"\}\n {2}output: src\/config\.ts:12/);
    expect(text).toContain("[assistant] It is in src/config.ts.");
    expect(text).not.toContain("left out");
  });

  it("full: says how many of the oldest entries were left out, and when there is nothing yet", () => {
    const entries: TranscriptEntry[] = [{ role: "assistant", type: "text", text: "newest" }];
    expect(taskReport(ended("completed", { result: "r" }), { transcript: { entries, omitted: 7 } })).toMatch(/7 oldest left out[\s\S]*\[assistant\] newest/);
    expect(taskReport(task("bg_3", "queued one"), { transcript: { entries: [], omitted: 0 } })).toContain("Transcript: nothing yet.");
    expect(taskReport(ended("completed", { result: "r" }))).not.toContain("Transcript");
  });

  const progress: Array<[string, Partial<TaskProgress>, RegExp]> = [
    ["tool calls and the last tool", { tool_calls: 4, last_tool: "grep" }, /4 tool call\(s\), last grep/],
    ["the last message", { last_message: "Reading src/config.ts" }, /Latest message: Reading src\/config\.ts/],
    [
      "a provider retry",
      { retry: { attempt: 3, message: "Provider is overloaded", next_at: "2026-01-01T00:00:09.000Z" } },
      /attempt 3, next at 2026-01-01T00:00:09\.000Z: Provider is overloaded/,
    ],
    [
      "a permission asked and its decision",
      { permission: { request_id: "per_1", permission: "edit", patterns: ["src/a.ts", "src/b.ts"], decision: "rejected" } },
      /Permission "edit" asked for src\/a\.ts, src\/b\.ts: rejected/,
    ],
    ["incomplete todos", { incomplete_todos: [{ content: "write tests", status: "pending" }] }, /Incomplete todos: write tests \(pending\)/],
    ["todo continuations", { todo_continuations: 2 }, /Todo continuations sent: 2/],
    ["stalled since", { stalled_since: "2026-01-01T00:05:00.000Z" }, /no event since 2026-01-01T00:05:00\.000Z/],
  ];

  it.each(progress)("progress: %s", (_, fields, expected) => {
    const t = running(fields);
    expect(taskReport(t, { now: T + 2_000 })).toMatch(expected);
    expect(taskReport(running({}), { now: T + 2_000 })).not.toMatch(expected);
  });

  it("the session, the queue position and the error", () => {
    expect(taskReport(running({}), { now: T + 2_000 })).toContain("Session ses_run, launched from session ses_parent.");
    expect(taskReport(task("bg_3", "waiting"), { queuePosition: 4 })).toMatch(/is queued at position 4 among agent explore's waiting tasks/);
    expect(taskReport(ended("error", { error: "APIError: 500" }))).toContain("failed after 2.5 s: APIError: 500");
  });
});

describe("one line per task (lists, batched wake-ups, MCP Tasks status, log messages)", () => {
  it("an unfinished task: status, agent, description and what it is doing", () => {
    const t = running({
      tool_calls: 2,
      last_tool: "read",
      retry: { attempt: 2, message: "overloaded", next_at: "2026-01-01T00:00:09.000Z" },
      permission: { request_id: "p", permission: "bash", patterns: ["rm *"], decision: "waiting" },
      stalled_since: "2026-01-01T00:05:00.000Z",
    });
    const line = taskLine(t, { now: T + 3_000 });
    expect(line).toMatch(/^bg_2 "Audit the queue" \(agent explore\) is running for 3 s\. Now: /);
    for (const part of ["2 tool call(s), last read", "provider retry, attempt 2", 'waiting for permission "bash"', "stalled"]) expect(line).toContain(part);
    expect(line).not.toContain("\n");
    expect(statusMessage(t, { now: T + 3_000 })).toBe(`running for 3 s; ${keyProgress(t).join("; ")}`);
  });

  it("a finished task: the sentence, with a short preview when it completed; nothing about progress", () => {
    const done = { ...ended("completed", { result: `The answer\n\nis ${"long ".repeat(50)}` }), progress: { tool_calls: 5, last_tool: "grep", last_message: "x" } };
    expect(keyProgress(done)).toEqual([]);
    expect(taskLine(done)).toBe(`${taskSentence(done).replace(/^Task /, "")} Preview: ${oneLine(done.result!, 120)}`);
    expect(taskLine(ended("error", { error: "boom" }))).toBe(taskSentence(ended("error", { error: "boom" })).replace(/^Task /, ""));
  });

  it("a batched wake-up names the other tasks of the batch by id only, so no prompt reads as another task's own", () => {
    const other = { ...ended("completed", { result: "x" }), id: "bg_other" };
    const wake = wakeText(ended("completed", { result: "y" }), [other]);
    expect(wake).toContain('\n- bg_other "Map the config loader" (agent explore) completed in 2.5 s.');
    expect(wake).not.toContain("Task bg_other ");
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
