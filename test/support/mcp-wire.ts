/**
 * An MCP client connected in memory to `createMcpServer` over the task manager, with every message
 * serialized to JSON and back on the way, as a real transport does: what JSON cannot carry (NaN,
 * Infinity, undefined, functions) never reaches the server.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { TaskPushRouter } from "../../src/mcp/push.js";
import { createMcpServer } from "../../src/mcp/server.js";
import type { TaskAccess } from "../../src/mcp/owned-tasks.js";
import { LOCAL_OWNER } from "../../src/tasks/manager.js";
import type { TaskChanges } from "../../src/tasks/records.js";

function overJson(transport: InMemoryTransport): InMemoryTransport {
  const send = transport.send.bind(transport);
  transport.send = (message, options) => send(JSON.parse(JSON.stringify(message)) as typeof message, options);
  return transport;
}

export interface McpPair {
  client: Client;
  close(): Promise<void>;
}

/** As the stdio transport wires it: one session of the local owner, attached to a push router. */
export async function connectMcp(tasks: TaskAccess, changes: TaskChanges, parentPrompt = true): Promise<McpPair> {
  const push = new TaskPushRouter(changes, tasks.manager);
  const session = createMcpServer({ tasks, push, parentPrompt }, { owner: LOCAL_OWNER });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await session.server.connect(overJson(serverSide));
  push.attach(session);
  const client = new Client({ name: "fuzz", version: "1.0.0" });
  await client.connect(overJson(clientSide));
  // The client validates structured results against the output schemas it has listed.
  await client.listTools();
  return {
    client,
    async close() {
      push.close();
      await client.close();
      await session.server.close();
    },
  };
}
