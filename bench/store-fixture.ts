// A data dir holding many finished tasks, written with the server's own store and task model, so the
// rows are exactly what a long-lived server would have accumulated.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { SqliteTaskStore } from "../src/tasks/sqlite-store.js";
import { createTask, transition, type Task } from "../src/tasks/task.js";

export interface StoreFixture {
  ids: string[];
  /** A --config file that keeps them all (the default retention keeps 10,000). */
  configFile: string;
  writeMs: number;
}

export function writeFinishedTasks(dataDir: string, count: number): StoreFixture {
  const started = performance.now();
  const store = new SqliteTaskStore(join(dataDir, "tasks.db"));
  const ids: string[] = [];
  const now = Date.now();
  try {
    for (let i = 0; i < count; i++) {
      // One second apart, the newest just now: all well inside the default 7-day age limit.
      const created = now - (count - i) * 1_000;
      const id = `bg_${i.toString(16).padStart(12, "0")}`;
      const queued = createTask(
        id,
        {
          owner: "local",
          description: `stored task ${i}`,
          prompt: `Summarise module ${i} of the project and list its public functions.`,
          agent: "explore",
          model: null,
          parent_session_id: null,
          timeout_ms: null,
        },
        created,
      );
      const running = transition(queued, "running", created + 5)!;
      const done: Task = {
        ...transition(running, "completed", created + 900, { result: `Module ${i} exports three functions: parse, format and check.` })!,
        session_id: `ses_bench${i.toString(36).padStart(8, "0")}`,
        prompted_at: created + 20,
        progress: { tool_calls: 2, last_tool: "read", last_message: `Module ${i} exports three functions.` },
      };
      store.put(done);
      ids.push(id);
    }
  } finally {
    store.close();
  }
  const configFile = join(dataDir, "bench-config.json");
  writeFileSync(configFile, JSON.stringify({ retention: { maxTasks: count * 2 } }));
  return { ids, configFile, writeMs: performance.now() - started };
}
