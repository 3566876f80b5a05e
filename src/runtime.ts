import type { Settings } from "./config.js";
import { OpencodeApi } from "./opencode/client.js";
import { startEmbeddedOpencode, type EmbeddedOpencode } from "./opencode/embedded.js";
import { ParentPrompter } from "./notify/parent-prompt.js";
import { TaskManager } from "./tasks/manager.js";
import { MemoryTaskStore } from "./tasks/store.js";

/** Tools a background session must not call: opencode's own `task`, and this server's tools under any server name. */
export const DISABLED_TOOLS: Record<string, boolean> = {
  task: false,
  "*background_task": false,
  "*background_output": false,
  "*background_cancel": false,
};

/** Everything behind the transports: opencode (attached or embedded), the task manager and the parent prompter. */
export interface Runtime {
  settings: Settings;
  manager: TaskManager;
  prompter: ParentPrompter | undefined;
  close(): Promise<void>;
}

export async function startRuntime(settings: Settings): Promise<Runtime> {
  let embedded: EmbeddedOpencode | undefined;
  let url = settings.opencodeUrl;
  if (url === undefined) {
    embedded = await startEmbeddedOpencode({ directory: settings.directory });
    url = embedded.url;
  }
  const api = new OpencodeApi({ url, directory: settings.directory, auth: settings.opencodeAuth });
  const manager = new TaskManager({
    api,
    store: new MemoryTaskStore(),
    concurrency: settings.concurrency,
    disabledTools: DISABLED_TOOLS,
  });
  manager.start();
  const prompter = settings.parentPrompt ? new ParentPrompter(api, manager) : undefined;
  return {
    settings,
    manager,
    prompter,
    async close() {
      manager.stop();
      prompter?.close();
      await embedded?.stop();
    },
  };
}
