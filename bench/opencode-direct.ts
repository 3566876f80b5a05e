// opencode driven directly with the SDK, no MCP server in between: the calibration that says how fast a
// task can possibly start on this opencode, and what each part of a start (session create, prompt_async)
// costs. Used by scenario 5a's calibration and by probe-start.ts.
import type { OpencodeClient } from "@opencode-ai/sdk/v2";
import type { ScriptedModel } from "../dev/model-server.js";
import { nowMs } from "../dev/model-server.js";
import { pool } from "./async-utils.js";

/** The options of one start: what goes into the session create and into the prompt. */
export interface StartShape {
  /** Default: a title (without one, opencode spends an extra model call generating it). */
  title?: string | null;
  parentID?: string;
  agent?: string;
  tools?: Record<string, boolean>;
  model?: { providerID: string; modelID: string };
}

export interface DirectStart {
  sessionID: string;
  /** Sent the create, its answer came, sent prompt_async, its 204 came (nowMs clock). */
  createAt: number;
  createdAt: number;
  promptedAt: number;
}

/** Creates a session and prompts it, as a server does to start a task; the prompt text carries the markers. */
export async function startDirect(sdk: OpencodeClient, shape: StartShape, text: string): Promise<DirectStart> {
  const createAt = nowMs();
  const title = shape.title === undefined ? "bench direct" : shape.title;
  const { data: session } = await sdk.session.create(
    { ...(title === null ? {} : { title }), ...(shape.parentID ? { parentID: shape.parentID } : {}) },
    { throwOnError: true },
  );
  const createdAt = nowMs();
  await sdk.session.promptAsync(
    {
      sessionID: session.id,
      ...(shape.agent ? { agent: shape.agent } : {}),
      ...(shape.tools ? { tools: shape.tools } : {}),
      ...(shape.model ? { model: shape.model } : {}),
      parts: [{ type: "text", text }],
    },
    { throwOnError: true },
  );
  return { sessionID: session.id, createAt, createdAt, promptedAt: nowMs() };
}

/** When each sample's first request reached the model, indexed as requests come in (cheap to poll). */
export class ModelArrivals {
  readonly #model: ScriptedModel;
  readonly #at = new Map<string, number>();
  #seen = 0;

  constructor(model: ScriptedModel) {
    this.#model = model;
  }

  at(sample: string): number | undefined {
    const requests = this.#model.requests;
    for (; this.#seen < requests.length; this.#seen++) {
      const r = requests[this.#seen]!;
      const id = /\bsample:(\S+)/.exec(r.firstUserText)?.[1];
      if (id && !this.#at.has(id)) this.#at.set(id, r.startedAt);
    }
    return this.#at.get(sample);
  }
}

/**
 * `n` starts with `width` in flight at once (each a create then a prompt_async), every prompt held at the
 * model in `group`. Returns the starts in order; the caller waits for the model and releases the group.
 */
export async function directBurst(sdk: OpencodeClient, n: number, width: number, group: string, shape: StartShape = {}): Promise<DirectStart[]> {
  return pool(
    Array.from({ length: n }, (_, i) => i),
    width,
    (i) => startDirect(sdk, shape, `[[group:${group}]][[hold:${group}]] sample:${group}-${i}`),
  );
}
