import { EventEmitter } from "node:events";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { describe, expect, it } from "vitest";
import { TaskPushRouter } from "../../src/mcp/push.js";
import { createMcpServer } from "../../src/mcp/server.js";
import type { McpSession } from "../../src/mcp/session.js";
import type { TaskLogMessage } from "../../src/mcp/notifications.js";
import type { TaskAccess } from "../../src/mcp/owned-tasks.js";
import { CallerDetector } from "../../src/opencode/caller-detector.js";
import type { LaunchInput, TaskManager } from "../../src/tasks/manager.js";
import type { TaskChange } from "../../src/tasks/records.js";
import { createTask, type Task, type TaskStatus } from "../../src/tasks/task.js";

/** Just enough of a TaskManager for the push router and the MCP server: tasks in memory, changes emitted. */
class FakeManager extends EventEmitter<{ change: [TaskChange] }> {
  readonly tasks = new Map<string, Task>();
  #n = 0;

  add(owner: string, status: TaskStatus = "completed", createdAt = ++this.#n): Task {
    const task = { ...createTask(`bg_${String(createdAt).padStart(6, "0")}`, newTask(owner), createdAt), status };
    this.tasks.set(task.id, task);
    return task;
  }

  change(event: TaskChange["event"], task: Task): void {
    this.emit("change", { event, task });
  }

  async launch(input: LaunchInput): Promise<Task> {
    const task = this.add(input.owner ?? "local", "queued");
    this.change("task.queued", task);
    return task;
  }

  get(id: string): Task | undefined {
    return this.tasks.get(id);
  }

  list({ limit = -1, offset = 0, owner }: { limit?: number; offset?: number; owner?: string } = {}): Task[] {
    const all = [...this.tasks.values()].filter((t) => owner === undefined || t.owner === owner).sort((a, b) => b.created_at - a.created_at);
    return all.slice(offset, limit < 0 ? undefined : offset + limit);
  }

  queuePosition(): number | null {
    return null;
  }
}

/** The MCP layer's access to tasks, over the fake manager (no opencode behind it: no caller, no transcripts). */
function accessTo(manager: FakeManager): TaskAccess {
  return { manager: manager as unknown as TaskManager, callers: new CallerDetector(), sessions: { messages: async () => [] } };
}

function newTask(owner: string) {
  return { owner, description: "d", prompt: "p", agent: "alpha", model: null, parent_session_id: null, timeout_ms: null };
}

/** A session stand-in that records what it is sent. */
class RecordingSession {
  readonly got: string[] = [];
  readonly subscriptions = new Set<string>();
  fail = false;
  constructor(
    readonly owner: string,
    readonly label: string,
  ) {}
  subscribed(uri: string): boolean {
    return this.subscriptions.has(uri);
  }
  async log(message: TaskLogMessage): Promise<void> {
    if (this.fail) throw new Error("broken pipe");
    this.got.push(`log:${String(message.data.event)}:${String(message.data.task_id)}`);
  }
  async resourceUpdated(uri: string): Promise<void> {
    this.got.push(`updated:${uri}`);
  }
  async resourceListChanged(): Promise<void> {
    this.got.push("list_changed");
  }
}

const settle = () => new Promise((r) => setTimeout(r, 0));

describe("TaskPushRouter", () => {
  function setup() {
    const manager = new FakeManager();
    const router = new TaskPushRouter(manager, manager);
    const session = (owner: string, label: string) => {
      const s = new RecordingSession(owner, label);
      router.attach(s as unknown as McpSession);
      return s;
    };
    return { manager, router, session };
  }

  it("tells the launching session about its task, list_changed to all the owner's sessions, and nothing to other owners", async () => {
    const { manager, router, session } = setup();
    const a1 = session("alice", "a1");
    const a2 = session("alice", "a2");
    const bob = session("bob", "b");
    const task = await router.launchFor(a1 as unknown as McpSession, () => manager.launch({ owner: "alice", description: "d", prompt: "p", agent: "alpha" }));
    manager.change("task.running", { ...task, status: "running" });
    manager.change("task.progress", { ...task, status: "running" });
    await settle();
    expect(a1.got).toEqual(["list_changed", `log:task.queued:${task.id}`, `log:task.running:${task.id}`]);
    expect(a2.got).toEqual(["list_changed"]);
    expect(bob.got).toEqual([]);
  });

  it("sends a subscriber the task's logs and resources/updated, but never another owner's", async () => {
    const { manager, router, session } = setup();
    const launcher = session("alice", "a1");
    const watcher = session("alice", "a2");
    const bob = session("bob", "b");
    const task = await router.launchFor(launcher as unknown as McpSession, () => manager.launch({ owner: "alice", description: "d", prompt: "p", agent: "alpha" }));
    const uri = `background-task://${task.id}`;
    watcher.subscriptions.add(uri);
    bob.subscriptions.add(uri);
    manager.change("task.progress", { ...task, status: "running" });
    manager.change("task.completed", { ...task, status: "completed" });
    await settle();
    expect(watcher.got).toEqual(["list_changed", `updated:${uri}`, `log:task.completed:${task.id}`, `updated:${uri}`]);
    expect(bob.got).toEqual([]);
  });

  it("once the launching session is gone, tells all the owner's sessions (a client that reconnected)", async () => {
    const { manager, router, session } = setup();
    const old = session("alice", "old");
    const task = await router.launchFor(old as unknown as McpSession, () => manager.launch({ owner: "alice", description: "d", prompt: "p", agent: "alpha" }));
    router.detach(old as unknown as McpSession);
    const fresh = session("alice", "new");
    manager.change("task.completed", { ...task, status: "completed" });
    // A task from before this process started has no known launcher either.
    const recovered = manager.add("alice", "running");
    manager.change("task.error", { ...recovered, status: "error" });
    await settle();
    expect(fresh.got).toEqual([`log:task.completed:${task.id}`, `log:task.error:${recovered.id}`]);
  });

  it("logs a failed push and still pushes to the other sessions", async () => {
    const { manager, session } = setup();
    const broken = session("alice", "broken");
    broken.fail = true;
    const fine = session("alice", "fine");
    const task = manager.add("alice", "running");
    manager.change("task.completed", { ...task, status: "completed" });
    await settle();
    expect(fine.got).toEqual([`log:task.completed:${task.id}`]);
  });
});

describe("the MCP server over one owner's tasks", () => {
  async function connect(manager: FakeManager, owner: string): Promise<Client> {
    const router = new TaskPushRouter(manager, manager);
    const session = createMcpServer({ tasks: accessTo(manager), push: router, parentPrompt: true }, { owner });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await session.server.connect(serverSide);
    const client = new Client({ name: "unit", version: "1.0.0" });
    await client.connect(clientSide);
    return client;
  }

  it("pages resources/list through the owner's tasks, newest first, 100 at a time", async () => {
    const manager = new FakeManager();
    for (let n = 0; n < 150; n++) manager.add("alice");
    for (let n = 0; n < 5; n++) manager.add("bob");
    const client = await connect(manager, "alice");
    const first = await client.listResources();
    expect(first.resources).toHaveLength(100);
    expect(first.resources[0]!.uri).toBe("background-task://bg_000150");
    expect(first.nextCursor).toBeDefined();
    const second = await client.listResources({ cursor: first.nextCursor });
    expect(second.resources).toHaveLength(50);
    expect(second.nextCursor).toBeUndefined();
    const uris = [...first.resources, ...second.resources].map((r) => r.uri);
    expect(new Set(uris).size).toBe(150);
    expect(uris.some((u) => manager.get(u.slice("background-task://".length))!.owner !== "alice")).toBe(false);
    await expect(client.listResources({ cursor: "bogus" })).rejects.toThrow(/Invalid cursor "bogus"/);
  });

  it("treats another owner's task as unknown in every tool and in resources/read", async () => {
    const manager = new FakeManager();
    const bobs = manager.add("bob", "running");
    const client = await connect(manager, "alice");
    const read = await client.callTool({ name: "background_output", arguments: { task_id: bobs.id } });
    expect(read.isError).toBe(true);
    const cancel = await client.callTool({ name: "background_cancel", arguments: { task_id: bobs.id } });
    expect(cancel.isError).toBe(true);
    const list = await client.callTool({ name: "background_output", arguments: {} });
    expect(list.structuredContent).toEqual({ tasks: [], next_cursor: null });
    await expect(client.readResource({ uri: `background-task://${bobs.id}` })).rejects.toMatchObject({ code: -32002 });
  });
});
