import { afterEach, describe, expect, it } from "vitest";
import type { OpencodeApi } from "../../src/opencode/client.js";
import { EventWatcher } from "../../src/opencode/event-watcher.js";
import { TaskManager } from "../../src/tasks/manager.js";
import { TaskRecords } from "../../src/tasks/records.js";
import { markedTask, sessionTitle } from "../../src/tasks/session-marks.js";
import { SqliteTaskStore } from "../../src/tasks/sqlite-store.js";
import type { Task } from "../../src/tasks/task.js";
import { SimulatedOpencode } from "../support/simulated-opencode.js";

/** The server process: a manager over the store; a "kill -9" just leaves it behind, with its jobs hanging. */
function serve(api: OpencodeApi, store: SqliteTaskStore): { manager: TaskManager; records: TaskRecords } {
  const records = new TaskRecords(store);
  const manager = new TaskManager({
    api,
    events: new EventWatcher(api),
    records,
    concurrency: { default: 2, agents: {} },
    disabledTools: { always: {}, atMaxDepth: {} },
  });
  manager.start();
  return { manager, records };
}

/** opencode creates the session, and the server dies before it hears the answer (so nothing is recorded). */
function crashingAfterCreate(sim: SimulatedOpencode): OpencodeApi {
  return new Proxy(sim, {
    get(target, key) {
      if (key === "createSession") return (input: { title: string }) => target.createSession(input).then(() => new Promise(() => undefined));
      const value: unknown = Reflect.get(target, key, target);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe("session marks: after a crash every background session belongs to exactly one task", () => {
  const stops: Array<() => void> = [];
  afterEach(() => {
    for (const stop of stops.splice(0)) stop();
  });

  it("puts the task id in the title, and reads it back", () => {
    const title = sessionTitle({ id: "bg_0123456789ab", description: "fix (the) bug", agent: "explore" });
    expect(title).toBe("fix (the) bug (@explore background bg_0123456789ab)");
    expect(markedTask(title)).toBe("bg_0123456789ab");
    expect(markedTask("fix the bug (@explore subagent)")).toBeUndefined();
  });

  it("reuses the session created just before a crash, and deletes one whose task has ended", async () => {
    const sim = new SimulatedOpencode({ agents: ["explore"] });
    const store = new SqliteTaskStore(":memory:");
    const first = serve(crashingAfterCreate(sim), store);
    stops.push(() => first.manager.stop());
    await first.manager.ready(1_000);
    const running = await first.manager.launch({ description: "a", prompt: "prompt a", agent: "explore" });
    const cancelled = await first.manager.launch({ description: "b", prompt: "prompt b", agent: "explore" });
    await sim.settle();
    // Both sessions exist in opencode; the store knows neither. Then b is cancelled, and the server dies.
    expect(sim.createdTitles).toHaveLength(2);
    expect(store.get(running.id)?.session_id).toBeNull();
    await first.manager.cancel(cancelled.id);
    first.manager.stop();

    const second = serve(sim, store);
    stops.push(() => second.manager.stop());
    await second.manager.ready(1_000);
    await sim.settle();
    const marked = (await sim.sessions({ search: " background bg_" })).filter((s) => markedTask(s.title) !== undefined);
    const recovered = second.records.get(running.id) as Task;
    expect(marked.map((s) => [markedTask(s.title), s.id])).toEqual([[running.id, recovered.session_id]]);
    expect(sim.createdTitles).toHaveLength(2); // no new session was created for the recovered task
    expect(sim.prompts.map((p) => [p.sessionID, p.text])).toEqual([[recovered.session_id, "prompt a"]]);
    sim.finishAll("answer a");
    await sim.settle();
    expect(second.records.get(running.id)).toMatchObject({ status: "completed", result: "answer a" });
  });
});
