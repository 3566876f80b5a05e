import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { createMcpServer } from "../mcp/server.js";
import type { Runtime } from "../runtime.js";

/** Serves MCP on stdin/stdout until the client closes stdin. */
export async function serveStdio(runtime: Runtime): Promise<void> {
  const { server, notifier } = createMcpServer(runtime.manager, { parentPrompt: runtime.settings.parentPrompt });
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.once("end", () => resolve());
    process.stdin.once("close", () => resolve());
  });
  await server.connect(transport);
  await closed;
  notifier.close();
  await server.close().catch(() => undefined);
}
