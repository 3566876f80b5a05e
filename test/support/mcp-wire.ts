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
import { CallerDetector } from "../../src/opencode/caller-detector.js";
import { EventWatcher } from "../../src/opencode/event-watcher.js";
import type { ConcurrencyLimits } from "../../src/tasks/agent-queues.js";
import { LOCAL_OWNER, TaskManager } from "../../src/tasks/manager.js";
import { TaskRecords, type TaskChanges } from "../../src/tasks/records.js";
import { SqliteTaskStore } from "../../src/tasks/sqlite-store.js";
import type { SimulatedOpencode } from "./simulated-opencode.js";

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

export interface SimulatedEngine {
  store: SqliteTaskStore;
  records: TaskRecords;
  manager: TaskManager;
  /** An MCP client of the local owner, connected to this engine in memory. */
  connect(): Promise<McpPair>;
  stop(): void;
}

/** The task engine as the runtime wires it, over a simulated opencode and an in-memory store; started and ready. */
export async function startSimulatedEngine(sim: SimulatedOpencode, concurrency: ConcurrencyLimits): Promise<SimulatedEngine> {
  const store = new SqliteTaskStore(":memory:");
  const records = new TaskRecords(store);
  const events = new EventWatcher(sim);
  const callers = new CallerDetector();
  events.on("event", (event) => callers.onEvent(event));
  const manager = new TaskManager({ api: sim, events, records, concurrency, disabledTools: { always: { task: false }, atMaxDepth: {} } });
  manager.start();
  await sim.settle();
  await manager.ready(5_000);
  return {
    store,
    records,
    manager,
    connect: () => connectMcp({ manager, callers, sessions: sim }, records),
    stop() {
      manager.stop();
      store.close();
    },
  };
}
