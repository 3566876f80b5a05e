import { describe, expect, it } from "vitest";
import { parentPromptText } from "../../src/notify/parent-prompt.js";
import { formatMs, taskReport, type ReportOptions } from "../../src/tasks/task-text.js";
import { createTask, isTerminal, transition, type Task, type TerminalStatus } from "../../src/tasks/task.js";

const STARTED = Date.parse("2026-01-01T00:00:01.000Z");

/** A task `ms` into its run (or, when it has ended, that long in all); null: it never started. */
function task(overrides: Partial<Task>, ms: number | null = 4_200): Task {
  const status = overrides.status ?? "running";
  return {
    ...createTask(
      "bg_7f3a",
      { owner: "local", description: "Map the config loader", prompt: "map it", agent: "explore", model: null, parent_session_id: null, timeout_ms: null },
      STARTED - 1_000,
    ),
    session_id: "ses_abc",
    started_at: ms === null ? null : STARTED,
    completed_at: ms !== null && isTerminal(status) ? STARTED + ms : null,
    ...overrides,
  };
}

function report(overrides: Partial<Task>, { ms = 4_200, ...options }: { ms?: number | null } & ReportOptions = {}): string {
  return taskReport(task(overrides, ms), { now: STARTED + (ms ?? 0), ...options });
}

function expectNamesTask(text: string): void {
  expect(text).toContain("bg_7f3a");
  expect(text).toContain("explore");
  expect(text).toContain("Map the config loader");
}

describe("taskReport", () => {
  it("queued: shows the queue position", () => {
    const text = report({ status: "queued" }, { ms: null, queuePosition: 3 });
    expectNamesTask(text);
    expect(text).toContain("queued");
    expect(text).toMatch(/position 3\b/);
    expect(report({ status: "queued" }, { ms: null, queuePosition: 1 })).toMatch(/position 1\b/);
  });

  it("running: shows the elapsed time, tool calls, the last tool and the latest message", () => {
    const text = report(
      { status: "running", progress: { tool_calls: 4, last_tool: "grep", last_message: "Reading src/config.ts" } },
      { ms: 2_500 },
    );
    expectNamesTask(text);
    expect(text).toContain("running");
    expect(text).toContain("2.5 s");
    expect(text).toMatch(/\b4 tool call/);
    expect(text).toContain("grep");
    expect(text).toContain("Reading src/config.ts");
  });

  it("running without progress says nothing about tools", () => {
    const text = report({ status: "running" });
    expect(text).toContain("running");
    expect(text).not.toContain("tool");
    expect(text).not.toContain("null");
  });

  it("completed: shows the result", () => {
    const result = "The config is parsed in src/config.ts.\nSee parseCli().";
    const text = report({ status: "completed", result }, { ms: 65_000 });
    expectNamesTask(text);
    expect(text).toContain("completed");
    expect(text).toContain(result);
    expect(text).toContain("1 min 5 s");
  });

  it.each([null, ""])("completed with result %j: says the agent wrote no text", (result) => {
    const text = report({ status: "completed", result });
    expect(text).toContain("(the agent wrote no text)");
    expect(text).not.toContain("null");
  });

  it("completed: lists incomplete todos", () => {
    const text = report({
      status: "completed",
      result: "partly",
      progress: {
        tool_calls: 1,
        last_tool: "todowrite",
        last_message: "partly",
        incomplete_todos: [
          { content: "write tests", status: "in_progress" },
          { content: "fix lint", status: "pending" },
        ],
      },
    });
    expect(text).toContain("write tests");
    expect(text).toContain("fix lint");
  });

  it("error: shows the reason", () => {
    const text = report({ status: "error", error: 'Agent not found: "nope"' }, { ms: 12 });
    expectNamesTask(text);
    expect(text).toContain("failed");
    expect(text).toContain('Agent not found: "nope"');
  });

  it("cancelled: shows the reason when there is one", () => {
    const text = report({ status: "cancelled", error: "cancelled by request" });
    expectNamesTask(text);
    expect(text).toContain("cancelled");
    expect(text).toContain("cancelled by request");
    const bare = report({ status: "cancelled", error: null }, { ms: null });
    expect(bare).toContain("cancelled");
    expect(bare).not.toContain("null");
  });
});

function finished(status: TerminalStatus, fields: { result?: string | null; error?: string | null }): Task {
  const queued = createTask(
    "bg_42",
    {
      owner: "local",
      description: "Audit the queue",
      prompt: "audit",
      agent: "general",
      model: null,
      parent_session_id: "ses_parent",
      timeout_ms: null,
    },
    1_000,
  );
  const running = transition(queued, "running", 10_000)!;
  return transition(running, status, 13_500, fields)!;
}

function expectNamesFinishedTask(text: string): void {
  expect(text).toContain("bg_42");
  expect(text).toContain("Audit the queue");
  expect(text).toContain("general");
  expect(text).toContain("3.5 s");
  // How to read the full output: the tool and this task's id.
  expect(text).toMatch(/background_output[^\n]*bg_42/);
}

describe("parentPromptText", () => {
  it("completed: names the task, its agent and duration, previews the result and says how to read it", () => {
    const text = parentPromptText(finished("completed", { result: "All good.\n\nNo issues   found." }));
    expectNamesFinishedTask(text);
    expect(text).toContain("COMPLETED");
    expect(text).toContain("All good. No issues found.");
  });

  it("completed: bounds a long result's preview", () => {
    const result = `${"word ".repeat(400)}THE-END`;
    const text = parentPromptText(finished("completed", { result }));
    expect(text).not.toContain("THE-END");
    expect(text.length).toBeLessThan(result.length);
    expectNamesFinishedTask(text);
  });

  it("error: names the task and the reason", () => {
    const text = parentPromptText(finished("error", { error: "APIError: rate limited (HTTP 429)" }));
    expectNamesFinishedTask(text);
    expect(text).toContain("ERROR");
    expect(text).toContain("failed");
    expect(text).toContain("APIError: rate limited (HTTP 429)");
    expect(text).not.toContain("Preview");
  });

  it("cancelled: names the task and the reason", () => {
    const text = parentPromptText(finished("cancelled", { error: "cancelled by request" }));
    expectNamesFinishedTask(text);
    expect(text).toContain("CANCELLED");
    expect(text).toContain("cancelled by request");
  });
});

describe("formatMs", () => {
  it("shows milliseconds under a second", () => {
    expect(formatMs(0)).toBe("0 ms");
    expect(formatMs(250)).toBe("250 ms");
    expect(formatMs(999)).toBe("999 ms");
  });

  it("shows seconds with one decimal under a minute", () => {
    expect(formatMs(1_000)).toBe("1 s");
    expect(formatMs(1_500)).toBe("1.5 s");
    expect(formatMs(12_345)).toBe("12.3 s");
    expect(formatMs(59_900)).toBe("59.9 s");
  });

  it("shows minutes and whole seconds from a minute on", () => {
    expect(formatMs(60_000)).toBe("1 min 0 s");
    expect(formatMs(65_000)).toBe("1 min 5 s");
    expect(formatMs(3_599_000)).toBe("59 min 59 s");
    expect(formatMs(3_600_000)).toBe("60 min 0 s");
  });

  it("carries rounded-up seconds into the minutes", () => {
    expect(formatMs(119_600)).toBe("2 min 0 s");
    expect(formatMs(179_500)).toBe("3 min 0 s");
    expect(formatMs(59_960)).toBe("1 min 0 s");
  });

  it("never shows 60 seconds, and stays within half a second of the duration", () => {
    const wrong: string[] = [];
    for (let ms = 60_000; ms <= 400_000; ms += 50) {
      const text = formatMs(ms);
      const match = /^(\d+) min (\d+) s$/.exec(text);
      const [minutes, seconds] = [Number(match?.[1]), Number(match?.[2])];
      if (!match || seconds >= 60 || Math.abs(minutes * 60 + seconds - ms / 1_000) > 0.5) wrong.push(`${ms} -> ${text}`);
    }
    expect(wrong).toEqual([]);
  });
});
