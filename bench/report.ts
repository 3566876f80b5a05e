// What a scenario reports, the ours-vs-seed table, and the PASS/FAIL lines. Every number carries its unit.
import { figure, type Distribution, type Figure } from "./stats.js";

export type Metric = Figure | Distribution;

/**
 * One line of the comparison table. `seed` is null when the baseline has no such figure (and why is in
 * `note`); `calibration` is the same workload with opencode driven directly, where the bench measures one.
 */
export interface Row {
  metric: string;
  ours: Metric;
  seed: Metric | null;
  calibration?: Metric;
  note?: string;
}

/** seed / ours: how many times larger the baseline's figure is (> 1 means ours is lower). */
export interface Ratio {
  unit: "x";
  value?: number | null;
  p50?: number | null;
  p95?: number | null;
  p99?: number | null;
}

export interface Budget {
  id: string;
  title: string;
  /** The budget as text, e.g. "<= 50 ms". */
  limit: string;
  measured: Figure;
  pass: boolean;
  /** What limits the figure, when it fails. */
  note?: string;
}

export interface ScenarioResult {
  name: string;
  rows: Row[];
  budgets: Budget[];
  /** Everything else worth keeping: raw breakdowns, workload parameters. Numbers inside carry units. */
  details: Record<string, unknown>;
  notes: string[];
}

const isDistribution = (m: Metric): m is Distribution => "p50" in m;

const divide = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a === null || a === undefined || b === null || b === undefined || b === 0 ? null : Math.round((a / b) * 100) / 100;

export function ratioOf(row: Row): Ratio | null {
  const { ours, seed } = row;
  if (!seed) return null;
  if (isDistribution(ours) && isDistribution(seed)) {
    return { unit: "x", p50: divide(seed.p50, ours.p50), p95: divide(seed.p95, ours.p95), p99: divide(seed.p99, ours.p99) };
  }
  if (!isDistribution(ours) && !isDistribution(seed)) return { unit: "x", value: divide(seed.value, ours.value) };
  return null;
}

export function budget(id: string, title: string, limit: string, measured: Figure, pass: boolean, note?: string): Budget {
  return { id, title, limit, measured: figure(measured.value, measured.unit), pass, ...(note && !pass ? { note } : {}) };
}

const num = (n: number | null | undefined): string => (n === null || n === undefined ? "n/a" : String(n));

function cell(metric: Metric | null): string {
  if (!metric) return "n/a";
  if (isDistribution(metric)) return `${num(metric.p50)} / ${num(metric.p95)} / ${num(metric.p99)} ${metric.unit} (n=${metric.n})`;
  return `${num(metric.value)} ${metric.unit}`;
}

function ratioCell(ratio: Ratio | null): string {
  if (!ratio) return "";
  const x = (n: number | null | undefined): string => (n === null || n === undefined ? "n/a" : `${n}x`);
  if (ratio.value !== undefined) return x(ratio.value);
  return `${x(ratio.p50)} / ${x(ratio.p95)} / ${x(ratio.p99)}`;
}

/** A plain-text table: distributions as p50 / p95 / p99, then the budgets. */
export function formatReport(scenarios: ScenarioResult[]): string {
  const lines: string[][] = [["metric", "ours", "seed baseline", "seed / ours", "opencode direct"]];
  for (const s of scenarios) {
    lines.push([`[${s.name}]`, "", "", "", ""]);
    for (const row of s.rows) {
      lines.push([`  ${row.metric}`, cell(row.ours), cell(row.seed), ratioCell(ratioOf(row)), row.calibration ? cell(row.calibration) : ""]);
    }
  }
  const widths = lines[0]!.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  const table = lines.map((l) => l.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd());
  const budgets = scenarios.flatMap((s) => s.budgets);
  const verdicts = budgets.map(
    (b) => `${b.pass ? "PASS" : "FAIL"}  ${b.id} ${b.title}: ${cell(b.measured)} (budget ${b.limit})${b.note ? ` -- ${b.note}` : ""}`,
  );
  return [...table, "", "Distributions: p50 / p95 / p99.", "", ...verdicts].join("\n");
}
