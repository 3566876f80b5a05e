// The shared world both servers run against in one bench run: one scripted model, one real opencode
// server in a sandbox, and the bench's own view of both (last-chunk times, parent prompts).
import { createOpencodeClient, type OpencodeClient } from "@opencode-ai/sdk/v2";
import { ScriptedModel } from "../dev/model-server.js";
import { startOpencodeSandbox, type OpencodeSandbox } from "../dev/opencode-sandbox.js";
import { OpencodeTap } from "./opencode-tap.js";
import { sleep, waitUntil } from "./async-utils.js";
import { BENCH_AGENTS } from "./profile.js";

/** Every bench prompt carries `sample:<id>`, so a model request can be traced back to its sample. */
export const sampleTag = (id: string): string => `sample:${id}`;
const SAMPLE = /\bsample:(\S+)/;

export interface Backend {
  model: ScriptedModel;
  opencode: OpencodeSandbox;
  sdk: OpencodeClient;
  /** The bench's own view of opencode's events (idle sessions, parent prompts). */
  tap: OpencodeTap;
  opencodeVersion: string;
  /** When the model streamed the last chunk of the answer for a sample (nowMs clock). */
  lastChunk(sampleId: string): number | undefined;
  /** A fresh parent session (registered with the tap) whose own model turns run in group "parents". */
  createParent(): Promise<string>;
  stop(): Promise<void>;
}

export async function startBackend(): Promise<Backend> {
  const model = await ScriptedModel.start();
  const lastChunks = new Map<string, number>();
  model.onLastChunk(({ firstUserText, at }) => {
    const id = SAMPLE.exec(firstUserText)?.[1];
    if (id && !lastChunks.has(id)) lastChunks.set(id, at);
  });
  const agents = Object.fromEntries(BENCH_AGENTS.map((name) => [name, { description: `Benchmark agent ${name}` }]));
  let opencode: OpencodeSandbox | undefined;
  try {
    // opencode runs on Bun, whose fetch sends at most 256 requests at once by default; scenario 5a needs
    // 1,000 model requests in flight. (With a stock opencode, at most 256 tasks are at the model at once.)
    opencode = await startOpencodeSandbox({ modelUrl: model.url, agents, env: { BUN_CONFIG_MAX_HTTP_REQUESTS: "4096" } });
    const sdk = createOpencodeClient({ baseUrl: opencode.url, directory: opencode.directory });
    const tap = await OpencodeTap.start(opencode.url, opencode.directory);
    const { data: health } = await sdk.global.health({ throwOnError: true });
    await warmUp(sdk, tap);
    const sandbox = opencode;
    return {
      model,
      opencode: sandbox,
      sdk,
      tap,
      opencodeVersion: health.version,
      lastChunk: (id) => lastChunks.get(id),
      async createParent() {
        // A title avoids opencode's extra title-generation model call.
        const { data: session } = await sdk.session.create({ title: "bench parent" }, { throwOnError: true });
        // Store a first user message without a model turn: its marker puts the parent's later turns
        // (answering the completion prompts) in their own group, away from the groups being measured.
        await sdk.session.promptAsync(
          { sessionID: session.id, noReply: true, parts: [{ type: "text", text: "[[group:parents]] parent session of a benchmark task" }] },
          { throwOnError: true },
        );
        tap.watch(session.id);
        return session.id;
      },
      async stop() {
        tap.stop();
        await sandbox.stop();
        await model.close();
      },
    };
  } catch (error) {
    await opencode?.stop();
    await model.close();
    throw error;
  }
}

/**
 * One finished run per agent, straight through the SDK: opencode's first prompt (and an agent's first use)
 * costs seconds of one-off set-up that no scenario should measure.
 */
async function warmUp(sdk: OpencodeClient, tap: OpencodeTap): Promise<void> {
  await Promise.all(
    BENCH_AGENTS.map(async (agent) => {
      const { data: session } = await sdk.session.create({ title: `warm-up ${agent}` }, { throwOnError: true });
      await sdk.session.promptAsync(
        { sessionID: session.id, agent, parts: [{ type: "text", text: "[[group:warmup]][[reply:ready]] warm-up" }] },
        { throwOnError: true },
      );
      await waitUntil(`opencode's warm-up run of agent ${agent}`, () => tap.idleAt(session.id) !== undefined, 120_000);
    }),
  );
}

/**
 * Waits until opencode runs no session (its status map is empty), then a moment more: sessions an earlier
 * workload released are still being finished inside opencode, and would slow whichever side runs next.
 */
export async function opencodeQuiet(backend: Backend, settleMs = 1_000, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { data } = await backend.sdk.session.status();
    if (Object.keys(data ?? {}).length === 0 || Date.now() > deadline) break;
    await sleep(250);
  }
  await sleep(settleMs);
}
