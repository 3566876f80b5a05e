import type { Settings } from "./config.js";
import { log } from "./log.js";
import { ParentNotifier } from "./notify/parent-prompt.js";
import { ToastNotifier } from "./notify/toast.js";
import { OpencodeHttpApi } from "./opencode/client.js";
import { OpencodeSupervisor } from "./opencode/embedded.js";
import { SessionContexts } from "./opencode/session-context.js";
import { openDataDir } from "./tasks/data-dir.js";
import { TaskManager } from "./tasks/manager.js";
import { SqliteTaskStore } from "./tasks/sqlite-store.js";

/**
 * Tools a background session must not call: opencode's own `task` (unbounded subagents), and at the
 * deepest allowed level this server's tools under any server name (opencode matches wildcards).
 */
export const DISABLED_TOOLS = {
  always: { task: false },
  atMaxDepth: { "*background_task": false, "*background_output": false, "*background_cancel": false },
};

/** Everything behind the transports: the store, opencode (attached or embedded), the task manager, the notifiers. */
export interface Runtime {
  settings: Settings;
  manager: TaskManager;
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
    const contexts = new SessionContexts();
    const manager = new TaskManager({
      api,
      store,
      concurrency: settings.concurrency,
      disabledTools: DISABLED_TOOLS,
      embedded: embedded !== undefined,
      resumeInterrupted: settings.resumeInterrupted,
      retention: settings.retention,
      policy: settings.policy,
      outboxFor: settings.parentPrompt ? (task) => notifier?.outboxFor(task) : undefined,
      events: contexts,
    });
    notifier = new ParentNotifier(api, store, manager, contexts);
    const toasts = new ToastNotifier(api, manager);
    const started = Date.now();
    const recovered = manager.start();
    log.info("task manager started", { ...recovered, stored: store.count(), ms: Date.now() - started, dataDir: dataDir.dir });
    void notifier.flush(); // messages left undelivered by the previous run
    const openStore = store;
    return {
      settings,
      manager,
      async close() {
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
