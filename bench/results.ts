// The shape of bench/results.json, checked before it is written and by the smoke test.
import { z } from "zod";
import type { Machine } from "./machine.js";
import { ratioOf, type ScenarioResult } from "./report.js";
import type { Figure } from "./stats.js";

const Figure = z.strictObject({ value: z.number().nullable(), unit: z.string().min(1) });
const Distribution = z.strictObject({
  unit: z.string().min(1),
  n: z.number().int().min(0),
  min: z.number().nullable(),
  p50: z.number().nullable(),
  p95: z.number().nullable(),
  p99: z.number().nullable(),
  max: z.number().nullable(),
  mean: z.number().nullable(),
});
const Metric = z.union([Figure, Distribution]);
const Ratio = z.strictObject({
  unit: z.literal("x"),
  value: z.number().nullable().optional(),
  p50: z.number().nullable().optional(),
  p95: z.number().nullable().optional(),
  p99: z.number().nullable().optional(),
});

export const Results = z.strictObject({
  schema: z.literal("background-agents-bench/2"),
  mode: z.enum(["full", "quick"]),
  date: z.iso.datetime(),
  duration: Figure,
  machine: z.strictObject({
    cores: Figure,
    cpu_model: z.string(),
    memory: Figure,
    node: z.string(),
    platform: z.string(),
    opencode: z.string(),
    load_at_start: Figure,
    load_at_end: Figure,
  }),
  scenarios: z.array(
    z.strictObject({
      name: z.string(),
      rows: z.array(
        z.strictObject({
          metric: z.string(),
          ours: Metric,
          seed: Metric.nullable(),
          calibration: Metric.optional(),
          ratio: Ratio.nullable(),
          note: z.string().optional(),
        }),
      ),
      budgets: z.array(z.strictObject({ id: z.string(), title: z.string(), limit: z.string(), measured: Figure, pass: z.boolean(), note: z.string().optional() })),
      details: z.record(z.string(), z.unknown()),
      notes: z.array(z.string()),
    }),
  ),
  summary: z.strictObject({ passed: z.number().int(), failed: z.number().int(), unit: z.literal("budgets") }),
});
export type Results = z.infer<typeof Results>;

export function buildResults(input: { quick: boolean; started: Date; duration: Figure; machine: Machine; scenarios: ScenarioResult[] }): Results {
  const budgets = input.scenarios.flatMap((s) => s.budgets);
  return Results.parse({
    schema: "background-agents-bench/2",
    mode: input.quick ? "quick" : "full",
    date: input.started.toISOString(),
    duration: input.duration,
    machine: input.machine,
    scenarios: input.scenarios.map((s) => ({ ...s, rows: s.rows.map((row) => ({ ...row, ratio: ratioOf(row) })) })),
    summary: { passed: budgets.filter((b) => b.pass).length, failed: budgets.filter((b) => !b.pass).length, unit: "budgets" },
  });
}

/**
 * Every number in the results sits in an object that names its unit (a figure, a distribution, a
 * per-route count). Returns the paths of numbers that do not.
 */
export function numbersWithoutUnit(value: unknown, path = "$"): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => numbersWithoutUnit(v, `${path}[${i}]`));
  if (value === null || typeof value !== "object") return [];
  const entries = Object.entries(value as Record<string, unknown>);
  const hasUnit = typeof (value as { unit?: unknown }).unit === "string";
  return entries.flatMap(([key, v]) => (typeof v === "number" ? (hasUnit ? [] : [`${path}.${key}`]) : numbersWithoutUnit(v, `${path}.${key}`)));
}
