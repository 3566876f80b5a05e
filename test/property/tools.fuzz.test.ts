/**
 * Fuzzing the three tools through a real MCP client (issue 5, "Tests"): any JSON as arguments gives a
 * result, or an `isError` result whose text says what was wrong, never a thrown protocol error or a
 * crash, and the server keeps answering afterwards. Messages cross a JSON wire (see mcp-wire.ts).
 *
 * `arguments` that are not a JSON object (an array, a string, null, ...) break the MCP request schema
 * itself: the SDK (1.32) answers those with a JSON-RPC error before any tool handler runs, code -32603
 * with the zod issue for `params.arguments` as its message. That is allowed here (it is the protocol
 * layer refusing a malformed request, not a tool failing) as long as the message names `arguments`.
 */
import fc from "fast-check";
import { ErrorCode, McpError, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackgroundCancelInput, BackgroundOutputInput, BackgroundTaskInput } from "../../src/mcp/schemas.js";
import type { TaskManager } from "../../src/tasks/manager.js";
import { startSimulatedEngine, type McpPair, type SimulatedEngine } from "../support/mcp-wire.js";
import { SimulatedOpencode } from "../support/simulated-opencode.js";
import { captureLogs, loggedErrors } from "../support/task-world.js";

const SCALE = Number(process.env.FC_RUNS_SCALE ?? 1);
const runs = (n: number): number => Math.max(1, Math.round(n * SCALE));
const TIMEOUT = Math.round(30_000 * Math.max(1, SCALE)) + 30_000;

const TOOLS = {
  background_task: BackgroundTaskInput,
  background_output: BackgroundOutputInput,
  background_cancel: BackgroundCancelInput,
} as const;
type ToolName = keyof typeof TOOLS;
const TOOL_NAMES = Object.keys(TOOLS) as ToolName[];

/** What an error text must not look like: a leaked exception rather than a statement of the problem. */
const INTERNAL = /TypeError|ReferenceError|RangeError|SyntaxError|Cannot read propert|is not a function|of undefined|of null|Maximum call stack|SQLITE|Output validation error|Internal error|\[object Object\]/i;

/** fc.assert, with the failure report cut short (a counterexample may hold a 1 MB string). */
async function check<Ts extends [unknown, ...unknown[]]>(property: fc.IAsyncProperty<Ts>, numRuns: number): Promise<void> {
  const details = await fc.check(property, { numRuns });
  if (details.failed) {
    const report = `${fc.defaultReportMessage(details) ?? "property failed"}\n${String(details.errorInstance)}`;
    throw new Error(report.replace(/(.)\1{200,}/gs, (run: string, c: string) => `${c.repeat(20)}…(${run.length} × ${JSON.stringify(c)})`).slice(0, 6_000));
  }
}

let sim: SimulatedOpencode;
let engine: SimulatedEngine;
let manager: TaskManager;
let mcp: McpPair;
let parentSession: string;
let restoreLogs: () => void;
const stats = new Map<string, number>();
const count = (key: string): void => void stats.set(key, (stats.get(key) ?? 0) + 1);
const started = Date.now();

beforeAll(async () => {
  restoreLogs = captureLogs();
  // Every run finishes by itself a few event-loop turns after it starts, so `block: true` returns soon.
  sim = new SimulatedOpencode({ agents: ["explore", "general", "build"], autoFinishTurns: 2 });
  engine = await startSimulatedEngine(sim, { default: 2, agents: { explore: 1 } });
  manager = engine.manager;
  mcp = await engine.connect();
  parentSession = await sim.createSession({ title: "the parent" });
});

afterAll(async () => {
  await mcp.close();
  engine.stop();
  restoreLogs();
  if (process.env.FC_TALLIES) {
    const lines = [...stats.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${String(n).padStart(7)}  ${k}`);
    console.log(`tool fuzzing: ${Date.now() - started} ms\n${lines.join("\n")}`);
  }
});

/** Task ids the fuzzer may use: real ones (from launches) and made-up ones. */
const realIds: string[] = [];
const taskId: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.nat().map((i) => (realIds.length ? realIds[i % realIds.length] : "bg_000000000000")) },
  { weight: 1, arbitrary: fc.constantFrom("bg_000000000000", "bg_", "", " ", "../../etc/passwd", "bg_%00", "background-task://x") },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
);

/** Values of every kind: right and wrong types, edge numbers, odd strings. */
const weird: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -0, -1, 1.5, -1e21, 1e21, Number.MAX_SAFE_INTEGER, 2 ** 53 + 2, "", " ", "\u0000", "\n\t", "NaN", "-1"),
  fc.integer(),
  fc.double(), // JSON has no NaN or Infinity: on the wire they become null
  fc.string({ unit: "binary", maxLength: 50 }),
  fc.string({ unit: "grapheme", maxLength: 50 }),
  fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
);

/** Long strings: past the 1 MB prompt limit, past the 200-character description limit, and in between. */
const hugeString = fc
  .constantFrom(1_100_000, 70_000, 2_000)
  .chain((n) => fc.constantFrom("x", "é", "🙂").map((c) => c.repeat(Math.ceil(n / c.length))));

/** Mostly a valid value, sometimes a plausible mistake. */
const mostly = <T,>(valid: fc.Arbitrary<T>, mistaken: fc.Arbitrary<T>): fc.Arbitrary<T> =>
  fc.oneof({ weight: 5, arbitrary: valid }, { weight: 1, arbitrary: mistaken });

const plausibleTask: Record<string, fc.Arbitrary<unknown>> = {
  description: mostly(
    fc.oneof(fc.constantFrom("Fuzzed task", "  spaced  ", "ünïcödé 🚀"), fc.string({ unit: "grapheme", minLength: 1, maxLength: 60 })),
    fc.constantFrom("", "   ", "\n"),
  ),
  prompt: mostly(fc.oneof(fc.constant("Say hi."), fc.string({ unit: "grapheme", minLength: 1, maxLength: 200 })), fc.constantFrom("", " \t ")),
  agent: mostly(fc.constantFrom("explore", "general", "build"), fc.constantFrom("title", "compaction", "nope", "EXPLORE", " explore")),
  model: mostly(fc.constantFrom(undefined, "sim/sim-1", "anthropic/claude-sonnet-4"), fc.constantFrom("no-slash", "/x", "x/", "a/b c")),
  parent_session_id: mostly(fc.constantFrom(undefined, "__parent__"), fc.constantFrom("ses_missing", "")),
  timeout_ms: mostly(fc.constantFrom(undefined, 1, 50, 60_000, 86_400_000), fc.constantFrom(86_400_001, 0, -5, 1.5)),
};
const plausibleOutput: Record<string, fc.Arbitrary<unknown>> = {
  task_id: taskId,
  block: fc.boolean(),
  timeout_ms: fc.constantFrom(undefined, 0, 1, 50, 600_000, 600_001, -1, 2.5),
  full: fc.boolean(),
};
const plausibleCancel: Record<string, fc.Arbitrary<unknown>> = { task_id: taskId, all: fc.constantFrom(undefined, true, false) };
const PLAUSIBLE: Record<ToolName, Record<string, fc.Arbitrary<unknown>>> = {
  background_task: plausibleTask,
  background_output: plausibleOutput,
  background_cancel: plausibleCancel,
};

/**
 * One argument object: plausible values for every key (valid more often than not), then a few keys
 * dropped or replaced by a weird or huge value, and maybe an extra key.
 */
function argsFor(name: ToolName): fc.Arbitrary<Record<string, unknown>> {
  const plausible = PLAUSIBLE[name];
  const keys = Object.keys(plausible);
  const mutation = fc.record({
    key: fc.constantFrom(...keys, "__proto__", "constructor", "extra", "taskId", ""),
    value: fc.oneof({ weight: 2, arbitrary: fc.constant<unknown>(undefined) }, { weight: 6, arbitrary: weird }, { weight: 1, arbitrary: hugeString }),
  });
  return fc
    .tuple(fc.record(plausible), fc.array(mutation, { maxLength: 2 }))
    .map(([base, mutations]) => {
      const args: Record<string, unknown> = Object.fromEntries(Object.entries(base).filter(([, v]) => v !== undefined));
      for (const { key, value } of mutations) {
        if (value === undefined) delete args[key];
        else Object.defineProperty(args, key, { value, enumerable: true, writable: true, configurable: true });
      }
      if (args.parent_session_id === "__parent__") args.parent_session_id = parentSession;
      return args;
    });
}

type Outcome = { kind: "result"; result: CallToolResult } | { kind: "thrown"; error: unknown };

async function call(name: string, args: unknown): Promise<Outcome> {
  try {
    const result = (await mcp.client.callTool({ name, arguments: args as Record<string, unknown> }, undefined, { timeout: 10_000 })) as CallToolResult;
    return { kind: "result", result };
  } catch (error) {
    return { kind: "thrown", error };
  }
}

function textOf(result: CallToolResult): string {
  return result.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
}

/** The arguments as the server receives them (after the JSON wire). */
function onTheWire(args: unknown): unknown {
  const json = JSON.stringify(args);
  return json === undefined ? undefined : JSON.parse(json);
}

/** Checks one call's outcome; returns a description of what is wrong, or null. */
function problem(name: ToolName, args: unknown, outcome: Outcome): string | null {
  const wire = onTheWire(args);
  const isObject = wire !== null && typeof wire === "object" && !Array.isArray(wire);
  if (outcome.kind === "thrown") {
    const error = outcome.error;
    const protocolRefusal = error instanceof McpError && (error.code === ErrorCode.InvalidParams || error.code === ErrorCode.InternalError);
    if (!isObject && wire !== undefined && protocolRefusal && /arguments/.test(error.message)) {
      count(`${name}: protocol error for non-object arguments`);
      return null;
    }
    return `threw ${error instanceof McpError ? `McpError ${error.code}` : "an error"}: ${String(error).slice(0, 300)}`;
  }
  const { result } = outcome;
  const text = textOf(result);
  if (!text.trim()) return "empty text";
  if (INTERNAL.test(text)) return `error text looks like a leaked exception: ${text.slice(0, 300)}`;
  const parsed = TOOLS[name].safeParse(isObject ? wire : (wire ?? {}));
  const unknown = isObject ? unknownKeys(name, wire) : [];
  if (result.isError) {
    if (!parsed.success) {
      // A schema error must name a key that was wrong.
      const keys = new Set(parsed.error.issues.map((i) => String(i.path[0] ?? "")));
      const named = [...keys].some((k) => k && text.includes(k));
      if (!named && isObject) return `isError does not name the wrong key (${[...keys].join(", ")}): ${text.slice(0, 300)}`;
      count(`${name}: invalid input -> isError`);
    } else if (unknown.length) {
      // A parameter the tool does not take is refused by name, with the allowed ones.
      const missing = unknown.filter((k) => !text.includes(JSON.stringify(k)));
      if (missing.length || !text.includes("allowed: ")) return `refusal does not name ${JSON.stringify(missing)} and the allowed keys: ${text.slice(0, 300)}`;
      count(`${name}: unknown parameter -> isError`);
    } else {
      count(`${name}: valid input -> isError (${classify(text)})`);
    }
    return null;
  }
  if (!parsed.success) return `accepted input its own schema rejects (${parsed.error.issues[0]?.message}): ${JSON.stringify(wire).slice(0, 200)}`;
  if (unknown.length) return `accepted parameters it does not take (${JSON.stringify(unknown)}): ${JSON.stringify(wire).slice(0, 200)}`;
  if (!result.structuredContent) return "success without structuredContent";
  if (name === "background_task") {
    const id = (result.structuredContent as { task_id?: unknown }).task_id;
    if (typeof id !== "string" || !manager.get(id)) return `launched, but task ${String(id)} is unknown`;
    realIds.push(id);
  }
  count(`${name}: ok`);
  return null;
}

/**
 * The keys of `args` that `tool` does not take. "__proto__" does not count: the SDK's request schema drops it
 * from `arguments` before any tool sees the call.
 */
function unknownKeys(tool: ToolName, args: object): string[] {
  return Object.keys(args).filter((key) => key !== "__proto__" && !Object.hasOwn(TOOLS[tool].shape, key));
}

function classify(text: string): string {
  if (text.startsWith("Unknown task_id")) return "unknown task";
  if (text.includes("unknown agent")) return "unknown agent";
  if (text.includes("parent_session_id")) return "unknown parent";
  if (text.includes("bytes")) return "prompt too large";
  if (text.includes("provider/model")) return "bad model";
  if (text.startsWith("Give task_id")) return "cancel without target";
  return text.slice(0, 40);
}

/** Every task launched by the fuzzing ends (runs finish by themselves; timeouts and cancels end the rest). */
async function allTasksEnd(): Promise<void> {
  for (let round = 0; round < 200; round++) {
    await sim.settle();
    if (manager.list().every((t) => t.status !== "queued" && t.status !== "running")) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const open = manager.list().filter((t) => t.status === "queued" || t.status === "running");
  expect.fail(`${open.length} task(s) never ended: ${open.slice(0, 5).map((t) => `${t.id} ${t.status} ${t.agent}`).join("; ")}`);
}

async function stillServing(): Promise<void> {
  await allTasksEnd();
  const { tools } = await mcp.client.listTools();
  expect(tools.map((t) => t.name).sort()).toEqual([...TOOL_NAMES].sort());
  const launched = await call("background_task", { description: "After the fuzz", prompt: "Say hi.", agent: "general" });
  expect(launched.kind).toBe("result");
  const result = (launched as { result: CallToolResult }).result;
  expect(result.isError, textOf(result)).toBeFalsy();
  const id = (result.structuredContent as { task_id: string }).task_id;
  const done = await call("background_output", { task_id: id, block: true, timeout_ms: 5_000 });
  expect(done.kind).toBe("result");
  expect((done as { result: CallToolResult }).result.structuredContent).toMatchObject({ task_id: id, status: "completed" });
}

describe("fuzzing the tools through MCP", () => {
  for (const name of TOOL_NAMES) {
    it(`${name}: arguments with the right keys and wrong, odd or huge values`, async () => {
      await check(
        fc.asyncProperty(argsFor(name), async (args) => {
          const outcome = await call(name, args);
          const wrong = problem(name, args, outcome);
          if (wrong) expect.fail(`${name} ${JSON.stringify(onTheWire(args))?.slice(0, 500)}: ${wrong}`);
        }),
        runs(name === "background_task" ? 600 : 500),
      );
      await stillServing();
    }, TIMEOUT);
  }

  it("oversized inputs (1.1 MB prompt, description, task_id) are refused with the reason", async () => {
    const big = "é".repeat(550_001); // 1.1 MB of UTF-8 in 550,001 characters
    const cases: Array<[ToolName, Record<string, unknown>, RegExp]> = [
      ["background_task", { description: "Big prompt", prompt: big, agent: "explore" }, /1 MB|bytes/],
      ["background_task", { description: big, prompt: "Say hi.", agent: "explore" }, /description/],
      ["background_output", { task_id: big }, /Unknown task_id/],
      ["background_cancel", { task_id: big }, /Unknown task_id/],
    ];
    for (const [name, args, reason] of cases) {
      const outcome = await call(name, args);
      expect(problem(name, args, outcome)).toBeNull();
      const result = (outcome as { result: CallToolResult }).result;
      expect(result.isError).toBe(true);
      expect(textOf(result)).toMatch(reason);
    }
  });

  it("any JSON value (and any value, as JSON carries it) as the arguments of any tool", async () => {
    await check(
      fc.asyncProperty(
        fc.constantFrom(...TOOL_NAMES),
        fc.oneof(fc.jsonValue(), fc.anything(), fc.dictionary(fc.string(), fc.jsonValue())),
        async (name, args) => {
          const outcome = await call(name, args);
          const wrong = problem(name, args, outcome);
          if (wrong) expect.fail(`${name} ${JSON.stringify(onTheWire(args))?.slice(0, 500)}: ${wrong}`);
        },
      ),
      runs(800),
    );
    await stillServing();
  }, TIMEOUT);

  it("a burst of concurrent fuzzed calls to all three tools leaves the server answering", async () => {
    await check(
      fc.asyncProperty(
        fc.array(fc.constantFrom(...TOOL_NAMES).chain((name) => argsFor(name).map((args) => [name, args] as const)), { minLength: 2, maxLength: 12 }),
        async (calls) => {
          const outcomes = await Promise.all(calls.map(([name, args]) => call(name, args)));
          outcomes.forEach((outcome, i) => {
            const [name, args] = calls[i]!;
            const wrong = problem(name, args, outcome);
            if (wrong) expect.fail(`${name} ${JSON.stringify(onTheWire(args))?.slice(0, 500)}: ${wrong}`);
          });
        },
      ),
      runs(150),
    );
    await sim.settle();
    await stillServing();
    expect(loggedErrors).toEqual([]);
  }, TIMEOUT);
});
