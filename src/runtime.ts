import type { Settings } from "./config.js";
import { log } from "./log.js";
import { ParentNotifier } from "./notify/parent-prompt.js";
import { ToastNotifier } from "./notify/toast.js";
import type { TaskAccess } from "./mcp/owned-tasks.js";
import { CallerDetector } from "./opencode/caller-detector.js";
import { OpencodeHttpApi } from "./opencode/client.js";
import { OpencodeSupervisor } from "./opencode/embedded.js";
import { EventWatcher } from "./opencode/event-watcher.js";
import { SessionContexts } from "./opencode/session-context.js";
import { openDataDir } from "./tasks/data-dir.js";
import { TaskManager } from "./tasks/manager.js";
import { TaskRecords, type TaskChanges } from "./tasks/records.js";
import { pruneFinishedTasks } from "./tasks/retention.js";
import { SqliteTaskStore } from "./tasks/sqlite-store.js";

/**
 * Tools a background session must not call: opencode's own `task` (unbounded subagents), and at the
 * deepest allowed level this server's tools under any server name (opencode matches wildcards).
 */
export const DISABLED_TOOLS = {
  always: { task: false },
  atMaxDepth: { "*background_task": false, "*background_output": false, "*background_cancel": false },
};

/**
 * Everything behind the transports: the store, opencode (attached or embedded), the task records and
 * manager, the notifiers. The transports reach tasks through `tasks` and hear of changes from `changes`.
 */
export interface Runtime {
  settings: Settings;
  tasks: TaskAccess;
  changes: TaskChanges;
  close(): Promise<void>;
}

export async function startRuntime(settings: Settings): Promise<Runtime> {
  // The store comes first: a data dir in use or a database we cannot use stops us before anything runs.
  const dataDir = openDataDir(settings.dataDir);
  let store: SqliteTaskStore | undefined;
  let embedded: OpencodeSupervisor | undefined;
  try {
    store = new SqliteTaskStore(dataDir.databasePath);
    let url = settings.opencodeUrl;
    if (url === undefined) {
      embedded = await OpencodeSupervisor.start({ directory: settings.directory });
      url = embedded.url;
    }
    const api = new OpencodeHttpApi({ url, directory: settings.directory, auth: settings.opencodeAuth });
    let notifier: ParentNotifier | undefined = undefined;
    const records = new TaskRecords(store, {
      maxResultChars: settings.policy.maxResultChars,
      outboxFor: settings.parentPrompt ? (task) => notifier?.outboxFor(task) : undefined,
    });
    const events = new EventWatcher(api);
    const callers = new CallerDetector();
    events.on("event", (event) => callers.onEvent(event));
    // What each session's latest user message asked for (agent, model), for prompts into parent sessions.
    const contexts = new SessionContexts();
    events.on("event", (event) => contexts.onEvent(event));
    events.on("connected", (reconnect) => contexts.onConnected(reconnect));
    const manager = new TaskManager({
      api,
      events,
      records,
      concurrency: settings.concurrency,
      disabledTools: DISABLED_TOOLS,
      embedded: embedded !== undefined,
      resumeInterrupted: settings.resumeInterrupted,
      policy: settings.policy,
    });
    // The notifiers are the end of the flow: they hear the records' changes.
    notifier = new ParentNotifier(api, store, records, contexts);
    const toasts = new ToastNotifier(api, records);
    const stopPruning = pruneFinishedTasks(records, settings.retention);
    const started = Date.now();
    const recovered = manager.start();
    log.info("task manager started", { ...recovered, stored: store.count(), ms: Date.now() - started, dataDir: dataDir.dir });
    void notifier.flush(); // messages left undelivered by the previous run
    const openStore = store;
    return {
      settings,
      tasks: { manager, callers, sessions: api },
      changes: records,
      async close() {
        stopPruning();
        manager.stop();
        notifier?.close();
        toasts.close();
        await embedded?.stop();
        openStore.close();
        dataDir.release();
      },
    };
  } catch (error) {
    await embedded?.stop();
    store?.close();
    dataDir.release();
    throw error;
  }
}
