import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { TaskPushRouter } from "../mcp/push.js";
import { createMcpServer } from "../mcp/server.js";
import type { Runtime } from "../runtime.js";
import { LOCAL_OWNER } from "../tasks/manager.js";

/** Serves MCP on stdin/stdout until the client closes stdin. The one client is the local user. */
export async function serveStdio(runtime: Runtime): Promise<void> {
  const push = new TaskPushRouter(runtime.changes, runtime.tasks.manager);
  const session = createMcpServer({ tasks: runtime.tasks, push, parentPrompt: runtime.settings.parentPrompt, claudeChannel: runtime.settings.claudeChannel }, { owner: LOCAL_OWNER });
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.once("end", () => resolve());
    process.stdin.once("close", () => resolve());
  });
  await session.server.connect(transport);
  push.attach(session);
  await closed;
  push.close();
  await session.server.close().catch(() => undefined);
}
