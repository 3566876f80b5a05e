import type { SessionSignal } from "./session-signal.js";
import { answerText, type Step } from "./transcript.js";

type AssistantSignal = Extract<SessionSignal, { kind: "assistant" }>;
type TextSignal = Extract<SessionSignal, { kind: "text" }>;

interface StreamedStep extends Omit<Step, "text"> {
  /** Answer text parts by part id, in the order they were created (as the stored message lists them). */
  parts: Map<string, string>;
}

/**
 * What the event stream has shown of a session's answer, so that a finished run can be settled without
 * reading its messages. Memory is bounded: of the assistant steps it keeps only the latest and the latest
 * with text (all the outcome looks at), of the others only their ids.
 *
 * It vouches for nothing (`steps()` is null) unless it has seen the session from before our prompt,
 * without a gap: followed before the task was prompted, a run seen starting (a user message), and no
 * reconnect since. Anything odd (an older step changing after a newer one) also ends its word.
 */
export class StreamedAnswer {
  readonly #assistantIds = new Set<string>();
  /** Prompts (ours and opencode's own): their text is not the answer. A session has a handful. */
  readonly #userIds = new Set<string>();
  #last: StreamedStep | null = null;
  /** The latest step before `#last` that wrote text. */
  #lastWithText: StreamedStep | null = null;
  #runSeen = false;
  #gap: boolean;

  /** `fromStart`: followed before the task was prompted, so no event of its runs came before. */
  constructor(fromStart: boolean) {
    this.#gap = !fromStart;
  }

  /** Events may have been missed (the stream reconnected): only the stored messages can tell from now on. */
  lose(): void {
    this.#gap = true;
  }

  onUser(messageID: string): void {
    this.#runSeen = true;
    this.#userIds.add(messageID);
  }

  onAssistant({ messageID, completed, finish, error }: AssistantSignal): void {
    let step = this.#step(messageID);
    if (!step) {
      if (this.#assistantIds.has(messageID)) {
        this.#gap = true; // an older step changed after a newer one: not how opencode streams a run
        return;
      }
      this.#assistantIds.add(messageID);
      if (this.#last && textOf(this.#last)) this.#lastWithText = this.#last;
      step = { id: messageID, completed, finish, error, parts: new Map() };
      this.#last = step;
    }
    Object.assign(step, { completed, finish, error });
  }

  /** Records an answer text part; false when it is not an assistant's (our own prompt's text). */
  onText({ messageID, partID, text }: TextSignal): boolean {
    if (!this.#assistantIds.has(messageID)) {
      // Neither a prompt nor a step we saw begin: the step's own announcement was lost.
      if (!this.#userIds.has(messageID)) this.#gap = true;
      return false;
    }
    const step = this.#step(messageID);
    if (step) step.parts.set(partID, text);
    else this.#gap = true;
    return true;
  }

  /** The assistant steps the outcome depends on, oldest first; null when the stream cannot vouch for them. */
  steps(): Step[] | null {
    if (this.#gap || !this.#runSeen) return null;
    return [this.#lastWithText, this.#last].flatMap((step) =>
      step ? [{ id: step.id, completed: step.completed, finish: step.finish, error: step.error, text: textOf(step) }] : [],
    );
  }

  #step(messageID: string): StreamedStep | null {
    if (this.#last?.id === messageID) return this.#last;
    return this.#lastWithText?.id === messageID ? this.#lastWithText : null;
  }
}

const textOf = (step: StreamedStep): string => answerText(step.parts.values());
