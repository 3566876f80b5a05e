// `npm run demo`: the whole system on this machine, no API keys. A scripted model stands in for the
// LLM; the built CLI is spawned over stdio exactly as an MCP client would, and starts its own
// embedded `opencode serve` in a throwaway project whose two agents talk only to that model.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { LoggingMessageNotificationSchema, ResourceUpdatedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { TaskView } from "../src/mcp/schemas.js";
import { ScriptedModel } from "./model-server.js";
import { writeSandboxProject } from "./opencode-sandbox.js";
import { BUILT_CLI } from "./paths.js";

const LIMITS: Record<string, number> = { explore: 2, review: 1 };

interface Launched {
  task_id: string;
  status: string;
  agent: string;
  description: string;
  queue_position: number | null;
}

interface Plan {
  agent: string;
  description: string;
  prompt: string;
  expect: "completed" | "cancelled";
  cancelWhileQueued?: boolean;
}

// Markers steer the scripted model: [[group]] names the bucket it counts concurrency in, [[hold:go]]
// keeps the answer until the demo releases "go" (so the first tasks surely occupy every slot while the
// rest queue), [[delay]] waits before answering, [[tool:bash:…]] makes it call bash first, [[chunks]]
// streams the reply in pieces.
const PLANS: Plan[] = [
  { agent: "explore", description: "Map the source tree", expect: "completed",
    prompt: "[[group:explore]][[hold:go]][[delay:300]][[reply:src/ holds cli, mcp, tasks and opencode]] Map the source tree." },
  { agent: "explore", description: "List the project with bash", expect: "completed",
    prompt: "[[group:explore]][[hold:go]][[delay:300]][[tool:bash:echo hello from bash && ls]][[reply:the project holds opencode.json]] List it." },
  { agent: "explore", description: "Summarise the config", expect: "completed",
    prompt: "[[group:explore]][[delay:800]][[chunks:4]][[reply:one mock provider, two subagents, no keys]] Summarise." },
  { agent: "review", description: "Review the queue code", expect: "completed",
    prompt: "[[group:review]][[hold:go]][[delay:300]][[reply:LGTM: two nits in agent-queues.ts]] Review it." },
  { agent: "review", description: "Review the tests", expect: "cancelled", cancelWhileQueued: true,
    prompt: "[[group:review]][[reply:never sent]] demo-never-runs Review the tests." },
];

const t0 = performance.now();
const say = (line: string): void => console.log(`+${((performance.now() - t0) / 1000).toFixed(2).padStart(5)}s  ${line}`);
const clip = (s: string | null | undefined, n = 48): string => (!s ? "-" : s.length > n ? `${s.slice(0, n - 1)}…` : s);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

class DemoFailure extends Error {}
function check(ok: boolean, message: string): void {
  if (!ok) throw new DemoFailure(message);
}

async function main(): Promise<void> {
  const root = mkdtempSync(path.join(os.tmpdir(), "background-agents-demo-"));
  const model = await ScriptedModel.start();
  let stderr = "";
  let client: Client | undefined;
  let failed = false;
  try {
    say(`scripted model listening at ${model.url}`);
    const project = writeSandboxProject(root, model.url, {
      explore: { description: "Reads the code and answers questions" },
      review: { description: "Reviews changes" },
    });
    say(`sandbox project ${project.directory} (agents: explore, review)`);

    const args = [BUILT_CLI, "--directory", project.directory, "--data-dir", path.join(root, "data"),
      "--concurrency", `explore=${LIMITS.explore}`, "--concurrency", `review=${LIMITS.review}`];
    const transport = new StdioClientTransport({
      command: process.execPath,
      args,
      env: { ...(process.env as Record<string, string>), ...project.env },
      stderr: "pipe",
    });
    transport.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-20_000);
    });
    client = new Client({ name: "background-agents-demo", version: "1.0.0" });
    const mcp = client;
    const notes: Array<{ task_id: string; status: string; event: string }> = [];
    mcp.setNotificationHandler(LoggingMessageNotificationSchema, ({ params }) => {
      const d = params.data as { event: string; task_id: string; status: string; agent: string; queue_position: number | null;
        duration_ms: number | null; result_preview: string | null; error: string | null };
      notes.push(d);
      const extra = d.queue_position !== null ? ` (queue position ${d.queue_position})`
        : d.status === "completed" ? ` in ${d.duration_ms} ms: "${clip(d.result_preview)}"`
        : d.error ? `: ${d.error}` : "";
      say(`  notify  ${d.event.padEnd(14)} ${d.task_id} ${d.agent}${extra}`);
    });
    // Every change of a subscribed task is pushed as resources/updated; read it and show tool progress.
    const shown = new Map<string, number>();
    mcp.setNotificationHandler(ResourceUpdatedNotificationSchema, async ({ params }) => {
      const content = (await mcp.readResource({ uri: params.uri }).catch(() => undefined))?.contents[0];
      if (!content || !("text" in content)) return;
      const view = JSON.parse(content.text) as TaskView;
      const { tool_calls, last_tool } = view.progress;
      if (tool_calls === (shown.get(view.task_id) ?? 0)) return;
      shown.set(view.task_id, tool_calls);
      say(`  update  ${params.uri} (${view.status}): ${tool_calls} tool call(s), last ${last_tool}`);
    });

    say(`spawning: node dist/cli.js ${args.slice(1).join(" ")}`);
    await mcp.connect(transport);
    await mcp.setLoggingLevel("info");
    say(`connected to ${mcp.getServerVersion()?.name} ${mcp.getServerVersion()?.version} (embedded opencode is up)`);

    const call = async <T>(name: string, input: Record<string, unknown>): Promise<T> => {
      const result = await mcp.callTool({ name, arguments: input }, undefined, { timeout: 60_000 });
      if (result.isError) throw new DemoFailure(`${name} failed: ${JSON.stringify(result.content)}`);
      return result.structuredContent as T;
    };

    const launched: Launched[] = [];
    for (const plan of PLANS) {
      const task = await call<Launched>("background_task", { agent: plan.agent, description: plan.description, prompt: plan.prompt });
      launched.push(task);
      await mcp.subscribeResource({ uri: `background-task://${task.task_id}` });
      const where = task.status === "queued" ? `queued at position ${task.queue_position}` : task.status;
      say(`launch  ${task.task_id} ${task.agent.padEnd(7)} "${task.description}" -> ${where}`);
      if (plan.cancelWhileQueued) {
        check(task.status === "queued", `${task.task_id} should have queued behind review's single slot, got ${task.status}`);
        const res = await call<{ cancelled: string[]; skipped: unknown[] }>("background_cancel", { task_id: task.task_id });
        say(`cancel  ${task.task_id} -> cancelled ${JSON.stringify(res.cancelled)}, skipped ${JSON.stringify(res.skipped)}`);
      }
    }
    check(launched[2]?.status === "queued" && launched[2].queue_position === 1, "the third explore task should queue at position 1");

    const list = await call<{ tasks: TaskView[] }>("background_output", {});
    say(`list    ${list.tasks.map((t) => `${t.task_id}=${t.status}`).join(" ")}`);

    for (let i = 0; i < 200 && !(model.inFlight("explore") === 2 && model.inFlight("review") === 1); i++) await sleep(50);
    say(`model   held in flight: explore ${model.inFlight("explore")}, review ${model.inFlight("review")}; releasing them`);
    model.release("go");
    say("waiting for every task with background_output {block: true} ...");
    const finals = await Promise.all(
      launched.map((t) => call<TaskView>("background_output", { task_id: t.task_id, block: true, timeout_ms: 30_000 })),
    );
    for (const v of finals) say(`result  ${v.task_id} ${v.status}: ${clip(v.result ?? v.error, 60)}`);

    // The terminal notification is pushed as the task ends; give the stream a moment to deliver all of them.
    for (let i = 0; i < 40 && !finals.every((v) => notes.some((n) => n.task_id === v.task_id && n.status === v.status)); i++) await sleep(50);

    console.log("\n  task             agent    status     duration  tools  result");
    finals.forEach((v) => {
      const dur = v.duration_ms === null ? "-" : `${(v.duration_ms / 1000).toFixed(2)}s`;
      console.log(`  ${v.task_id}  ${v.agent.padEnd(7)}  ${v.status.padEnd(9)}  ${dur.padStart(8)}  ${String(v.progress.tool_calls).padStart(5)}  ${clip(v.result ?? v.error)}`);
    });
    console.log("\n  agent    limit  max in flight at the model");
    for (const [agent, limit] of Object.entries(LIMITS)) console.log(`  ${agent.padEnd(7)}  ${String(limit).padStart(5)}  ${model.maxInFlight(agent)}`);
    console.log(`  (${model.requests.length} model requests, ${model.titleRequests} title requests)\n`);

    finals.forEach((v, i) => {
      const plan = PLANS[i]!;
      check(v.status === plan.expect, `${v.task_id} "${plan.description}" ended ${v.status} (${v.error ?? "no error"}), expected ${plan.expect}`);
      check(notes.some((n) => n.task_id === v.task_id && n.event === `task.${v.status}`), `no task.${v.status} notification for ${v.task_id}`);
    });
    check(finals[1]?.progress.tool_calls === 1 && finals[1].progress.last_tool === "bash", "the bash task should show 1 bash tool call");
    check(finals[0]?.result === "src/ holds cli, mcp, tasks and opencode", `unexpected result: ${finals[0]?.result}`);
    check(!model.sawText("demo-never-runs"), "the task cancelled while queued reached the model");
    for (const [agent, limit] of Object.entries(LIMITS)) {
      check(model.maxInFlight(agent) <= limit, `${agent} ran ${model.maxInFlight(agent)} at once, over its limit ${limit}`);
    }
    check(model.maxInFlight("explore") === LIMITS.explore, "explore never used both of its slots");

    // Closing the client ends the CLI's stdin: it must exit and take its embedded opencode down with it.
    const opencodeUrl = /"embedded opencode started".*?"url":"([^"]+)"/.exec(stderr)?.[1];
    const cliPid = transport.pid;
    await mcp.close();
    client = undefined;
    const cliAlive = (): boolean => {
      try {
        return cliPid !== null && process.kill(cliPid, 0);
      } catch {
        return false;
      }
    };
    const opencodeUp = (): Promise<boolean> =>
      opencodeUrl === undefined ? Promise.resolve(false) : fetch(opencodeUrl).then(() => true, () => false);
    for (let i = 0; i < 50 && (cliAlive() || (await opencodeUp())); i++) await sleep(100);
    check(!cliAlive(), `the CLI (pid ${cliPid}) is still running after the client closed`);
    check(!(await opencodeUp()), `the embedded opencode at ${opencodeUrl} still answers after the client closed`);
    say(`closed the client: the CLI (pid ${cliPid}) has exited and its opencode at ${opencodeUrl ?? "?"} is gone`);
  } catch (error) {
    failed = true;
    console.error(`\nDEMO FAILED: ${error instanceof DemoFailure ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    const tail = stderr.trimEnd().split("\n").slice(-30).join("\n");
    if (tail) console.error(`--- last lines of the CLI's stderr ---\n${tail}`);
  } finally {
    await client?.close().catch(() => undefined);
    await model.close();
    rmSync(root, { recursive: true, force: true });
  }
  if (failed) process.exit(1);
  say(`all good (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}

main().catch((error: unknown) => {
  console.error(`DEMO FAILED: ${String(error)}`);
  process.exit(1);
});
