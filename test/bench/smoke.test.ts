// A short run of `npm run bench` (BENCH_QUICK=1): it must complete and write a well-formed results file.
// Budgets are not checked here: timings on a shared CI machine say nothing; `npm run bench` reports them.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { numbersWithoutUnit, Results } from "../../bench/results.js";
import { REPO_ROOT } from "../../bench/paths.js";

const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const dir = mkdtempSync(join(tmpdir(), "bench-smoke-"));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs node with `args` in the repository; rejects with the output's tail when it fails. */
function node(args: string[], env: Record<string, string> = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-20_000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`node ${args.join(" ")} exited ${code}:\n${output}`))));
  });
}

describe("npm run bench (quick)", () => {
  it("completes and writes a results file with units, samples, both sides and a verdict per budget", async () => {
    const out = join(dir, "results.json");
    // The same steps as `npm run bench` after `npm run build` (which `npm test` has done).
    await node([tsc, "-p", "bench/tsconfig.json"]);
    await node([join("out", "bench", "bench", "run.js")], { BENCH_QUICK: "1", BENCH_OUT: out });

    const results = Results.parse(JSON.parse(readFileSync(out, "utf8")));
    expect(results.mode).toBe("quick");
    expect(numbersWithoutUnit(results)).toEqual([]);
    expect(results.machine.cores.value).toBeGreaterThan(0);
    expect(results.scenarios.map((s) => s.name.split(".")[0])).toEqual(["1", "2", "3", "4", "5b", "5a"]);
    for (const scenario of results.scenarios) {
      expect(scenario.rows.length, scenario.name).toBeGreaterThan(0);
      for (const row of scenario.rows) {
        // Every figure of ours was measured (distributions have samples); the seed's too where it has one.
        for (const metric of [row.ours, row.seed]) {
          if (metric === null) continue;
          if ("n" in metric) expect(metric.n, `${scenario.name}: ${row.metric}`).toBeGreaterThan(0);
          else expect(metric.value, `${scenario.name}: ${row.metric}`).not.toBeNull();
        }
      }
    }
    // Issue 10's budgets, each with a verdict: push share (a), parent prompt (b), start overhead (c), drain (d),
    // 1,000 tasks vs opencode driven directly (e), memory (f), launch on a busy opencode (g).
    expect(results.scenarios.flatMap((s) => s.budgets.map((b) => b.id)).sort()).toEqual(
      ["a.p50", "a.p99", "b.p50", "b.p99", "b.together.p50", "b.together.p99", "c.slot_a", "d.slot_a", "e.drain", "e.start", "f.rss", "f.seed", "g"].sort(),
    );
    const direct = results.scenarios.find((s) => s.name.startsWith("5a"))!.rows.filter((r) => r.calibration !== undefined);
    expect(direct.length).toBeGreaterThan(0);
    expect(results.summary.passed + results.summary.failed).toBe(results.scenarios.flatMap((s) => s.budgets).length);
  }, 300_000);
});
