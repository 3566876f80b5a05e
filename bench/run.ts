// `npm run bench`: our MCP server (the built CLI) and the seed baseline, side by side against one real
// opencode server and a scripted model; prints the comparison table with PASS/FAIL per budget and writes
// bench/results.json. Environment:
//   BENCH_QUICK=1   a few samples per scenario (the smoke test; budgets are printed but mean little)
//   BENCH_OUT=path  write the results there instead of bench/results.json
//   BENCH_ONLY=1,4  run only these scenarios (numbers as in the table)
//   BENCH_STRICT=1  exit 1 when a budget fails
import { writeFileSync } from "node:fs";
import { nowMs } from "../dev/model-server.js";
import { startBackend, type Backend } from "./backend.js";
import { describeMachine, loadAverage } from "./machine.js";
import { DEFAULT_RESULTS } from "./paths.js";
import { profileFromEnv, type Profile } from "./profile.js";
import { formatReport, type ScenarioResult } from "./report.js";
import { buildResults, numbersWithoutUnit } from "./results.js";
import { launchLatency } from "./scenarios/launch-latency.js";
import { opencodeLoad } from "./scenarios/opencode-load.js";
import { pushLatency } from "./scenarios/push-latency.js";
import { scaleRunning } from "./scenarios/scale-running.js";
import { scaleStore } from "./scenarios/scale-store.js";
import { slotUse } from "./scenarios/slot-use.js";
import { figure } from "./stats.js";

type Scenario = (backend: Backend, profile: Profile) => Promise<ScenarioResult>;

const SCENARIOS: Array<[string, Scenario]> = [
  ["1", pushLatency],
  ["2", launchLatency],
  ["3", slotUse],
  ["4", opencodeLoad],
  // 5b before 5a: opencode keeps finishing 5a's 1,000 released sessions for a while afterwards.
  ["5b", scaleStore],
  ["5a", scaleRunning],
];

async function main(): Promise<number> {
  const profile = profileFromEnv();
  const only = process.env.BENCH_ONLY?.split(",").map((s) => s.trim());
  const out = process.env.BENCH_OUT ?? DEFAULT_RESULTS;
  const startedAt = new Date();
  const loadAtStart = loadAverage();
  const started = nowMs();
  const backend = await startBackend();
  const scenarios: ScenarioResult[] = [];
  try {
    for (const [id, run] of SCENARIOS) {
      if (only && !only.some((o) => id.startsWith(o))) continue;
      const t0 = nowMs();
      console.log(`bench: scenario ${id}...`);
      scenarios.push(await run(backend, profile));
      console.log(`bench: scenario ${id} done in ${((nowMs() - t0) / 1000).toFixed(1)} s`);
    }
  } finally {
    await backend.stop();
  }
  const results = buildResults({
    quick: profile.quick,
    started: startedAt,
    duration: figure((nowMs() - started) / 1000, "s"),
    machine: describeMachine(backend.opencodeVersion, loadAtStart),
    scenarios,
  });
  const unitless = numbersWithoutUnit(results);
  if (unitless.length > 0) throw new Error(`bench bug: numbers without a unit in the results: ${unitless.join(", ")}`);
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  const m = results.machine;
  console.log(`\nbackground-agents-mcp vs seed baseline, ${results.mode} run, ${results.date}`);
  console.log(`machine: ${m.cores.value} cores (${m.cpu_model}), ${m.memory.value} MB, Node ${m.node}, ${m.platform}, opencode ${m.opencode}`);
  console.log(`load average (1 min): ${m.load_at_start.value} at start, ${m.load_at_end.value} at end\n`);
  console.log(formatReport(scenarios));
  console.log(`\n${results.summary.passed} budgets pass, ${results.summary.failed} fail; took ${results.duration.value} s; wrote ${out}`);
  return process.env.BENCH_STRICT === "1" && results.summary.failed > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error("bench failed:", error);
    process.exit(1);
  },
);
