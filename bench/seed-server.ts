// The seed baseline behind the same MCP tools and transport as our server (stdio, background_task /
// background_output), so the bench drives both through identical client code and the same opencode.
// Run by the bench as a child process:
//   node seed-server.js --opencode-url U --directory D [--concurrency agent=n]... [--poll-ms 2000]
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { createOpencodeClient } from "@opencode-ai/sdk/v2";
import { parseArgs } from "node:util";
import { z } from "zod";
import { SeedManager, type SeedTask } from "./seed-baseline.js";

const { values } = parseArgs({
  options: {
    "opencode-url": { type: "string" },
    directory: { type: "string" },
    concurrency: { type: "string", multiple: true },
    "poll-ms": { type: "string" },
  },
});
if (!values["opencode-url"] || !values.directory) {
  process.stderr.write("usage: seed-server --opencode-url <url> --directory <dir> [--concurrency agent=n]...\n");
  process.exit(2);
}
const limits = { default: 5, agents: {} as Record<string, number> };
for (const spec of values.concurrency ?? []) {
  const [agent, n] = spec.split("=");
  if (agent && n) limits.agents[agent] = Number(n);
}

const client = createOpencodeClient({ baseUrl: values["opencode-url"], directory: values.directory });
const manager = new SeedManager(client, limits, values["poll-ms"] ? Number(values["poll-ms"]) : undefined);
const server = new McpServer({ name: "seed-baseline", version: "0.0.0" }, { capabilities: { logging: {}, tools: {} } });

const view = (task: SeedTask) => ({
  task_id: task.id,
  status: task.status,
  agent: task.agent,
  description: task.description,
  session_id: task.sessionID,
  error: task.error ?? null,
});

server.registerTool(
  "background_task",
  {
    description: "Launch a background agent task (waits for a free slot of its agent).",
    inputSchema: {
      description: z.string(),
      prompt: z.string(),
      agent: z.string(),
      parent_session_id: z.string().optional(),
    },
  },
  async (args) => {
    const task = await manager.launch({ ...args, parentSessionID: args.parent_session_id });
    return { content: [{ type: "text", text: `Launched ${task.id}` }], structuredContent: view(task) };
  },
);

server.registerTool(
  "background_output",
  { description: "Status of one task, or of all tasks still in memory.", inputSchema: { task_id: z.string().optional() } },
  async ({ task_id }) => {
    if (task_id === undefined) {
      const tasks = [...manager.tasks.values()].map(view);
      return { content: [{ type: "text", text: `${tasks.length} task(s)` }], structuredContent: { tasks } };
    }
    const task = manager.tasks.get(task_id);
    // The seed dropped tasks from memory once their parent had been notified.
    if (!task) return { content: [{ type: "text", text: `Task not found: ${task_id}` }], isError: true };
    return { content: [{ type: "text", text: `${task.id} ${task.status}` }], structuredContent: view(task) };
  },
);

// The seed had no MCP push: the bench announces completion the moment the seed finds it (before its own
// 200 ms notification delay), the earliest an MCP client could possibly learn of it.
manager.on("completed", (task) => {
  void server
    .sendLoggingMessage({ level: "info", logger: "seed", data: { event: `task.${task.status}`, ...view(task) } })
    .catch(() => undefined);
});

const transport = new StdioServerTransport();
process.stdin.once("end", () => {
  manager.stop();
  process.exit(0);
});
await server.connect(transport);
