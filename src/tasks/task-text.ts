import type { TranscriptEntry } from "../opencode/transcript.js";
import { durationMs, isTerminal, type Task, type TaskProgress } from "./task.js";

/**
 * What people (and models) read about a task: durations, previews, and the sentence saying how it stands
 * or how it ended. The parent prompt, the channel event, the MCP logging message, the MCP Tasks status,
 * the toast and background_output all word a task through here, so they say the same thing.
 */

/** Where a queued task stands and when "now" is; both optional. */
export interface TextOptions {
  queuePosition?: number | null;
  now?: number;
}

/** The result's preview in notifications, in characters (with the "…" of a cut). */
const PREVIEW_CHARS = 300;
/** The result's preview in one line of a list. */
const LINE_PREVIEW_CHARS = 120;

export function formatMs(ms: number): string {
  if (ms < 1_000) return `${ms} ms`;
  const s = Math.round(ms / 100) / 10;
  if (s < 60) return `${s} s`;
  // Round once, to whole seconds: rounding the tenths again could show "1 min 60 s".
  const whole = Math.round(ms / 1_000);
  return `${Math.floor(whole / 60)} min ${whole % 60} s`;
}

/** How long the task has run (so far, or in all); null when it never started. */
export function ranFor(task: Task, now = Date.now()): string | null {
  const ms = durationMs(task, now);
  return ms === null ? null : formatMs(ms);
}

/** The text on one line (white space folded), cut to at most `max` characters with "…" when longer. */
export function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/**
 * How the task stands, without a subject: "queued at position 2 …", "running for 4 s", "completed in 2 min 4 s",
 * "failed after 3 s: <error>", "cancelled after 1 s (<reason>)", "cancelled before it started (<reason>)".
 */
export function statusClause(task: Task, { queuePosition = null, now = Date.now() }: TextOptions = {}): string {
  const took = ranFor(task, now);
  switch (task.status) {
    case "queued":
      return queuePosition === null ? "queued" : `queued at position ${queuePosition} among agent ${task.agent}'s waiting tasks`;
    case "running":
      return `running for ${took ?? formatMs(0)}`;
    case "completed":
      return `completed in ${took ?? formatMs(0)}`;
    case "error":
      return `failed ${took ? `after ${took}` : "before it started"}${task.error ? `: ${task.error}` : ""}`;
    case "cancelled":
      return `cancelled ${took ? `after ${took}` : "before it started"}${task.error ? ` (${task.error})` : ""}`;
  }
}

const VERB: Record<Task["status"], string> = { queued: "is ", running: "is ", completed: "", error: "", cancelled: "was " };

/** The sentence without its subject: `"Map the config" (agent explore) completed in 4.2 s.` */
const predicate = (task: Task, options: TextOptions): string =>
  `"${task.description}" (agent ${task.agent}) ${VERB[task.status]}${statusClause(task, options)}.`;

/**
 * THE sentence about a task: `Task bg_1 "Map the config" (agent explore) completed in 4.2 s.` Only a
 * message about that one task starts so: the outbox recognises a delivered parent prompt by it.
 */
export function taskSentence(task: Task, options: TextOptions = {}): string {
  return `Task ${task.id} ${predicate(task, options)}`;
}

const toolCalls = (progress: TaskProgress): string => `${progress.tool_calls} tool call(s), last ${progress.last_tool ?? "unknown"}`;

/** What an unfinished task is doing, in a few words (empty when there is nothing to say or it has ended). */
export function keyProgress(task: Task): string[] {
  if (isTerminal(task.status)) return [];
  const { progress } = task;
  return [
    progress.tool_calls ? toolCalls(progress) : "",
    progress.retry ? `provider retry, attempt ${progress.retry.attempt}, next at ${progress.retry.next_at}` : "",
    progress.permission?.decision === "waiting" ? `waiting for permission "${progress.permission.permission}"` : "",
    progress.stalled_since ? `stalled: no event since ${progress.stalled_since}` : "",
  ].filter(Boolean);
}

/** The MCP Tasks status message: how the task stands and what it is doing. */
export function statusMessage(task: Task, options: TextOptions = {}): string {
  return [statusClause(task, options), ...keyProgress(task)].join("; ");
}

/**
 * One line of a list, led by the task id (not "Task <id>", which marks a message about that task alone):
 * how it stands, then what an unfinished task is doing or a completed one's preview.
 */
export function taskLine(task: Task, options: TextOptions = {}): string {
  const doing = keyProgress(task);
  const preview = task.status === "completed" && task.result ? ` Preview: ${oneLine(task.result, LINE_PREVIEW_CHARS)}` : "";
  return `${task.id} ${predicate(task, options)}${doing.length ? ` Now: ${doing.join("; ")}.` : ""}${preview}`;
}

/** How to read the output of a task. */
export const readHint = (taskId: string): string => `Read the full output with background_output {"task_id": "${taskId}"}.`;

/** A task that has ended: the sentence and, when it completed, a preview of what it wrote. */
export function endedSummary(task: Task): string {
  if (task.status !== "completed") return taskSentence(task);
  return `${taskSentence(task)}\n${task.result ? `Preview: ${oneLine(task.result, PREVIEW_CHARS)}` : "The agent wrote no text."}`;
}

/** What a notification says about a task that has ended: the summary and how to read the output. */
export function endedText(task: Task): string {
  return `${endedSummary(task)}\n${readHint(task.id)}`;
}

/** Every progress field that is set, one line each. */
export function progressLines(progress: TaskProgress): string[] {
  const { retry, permission, incomplete_todos: todos } = progress;
  return [
    progress.tool_calls ? toolCalls(progress) : "",
    progress.last_message ? `Latest message: ${progress.last_message}` : "",
    retry ? `Provider retry: attempt ${retry.attempt}, next at ${retry.next_at}: ${retry.message}` : "",
    permission ? `Permission "${permission.permission}" asked for ${permission.patterns.join(", ") || "(no pattern)"}: ${permission.decision}` : "",
    todos?.length ? `Incomplete todos: ${todos.map((t) => `${t.content} (${t.status})`).join("; ")}` : "",
    progress.todo_continuations ? `Todo continuations sent: ${progress.todo_continuations}` : "",
    progress.stalled_since ? `Stalled: no event since ${progress.stalled_since}` : "",
  ].filter(Boolean);
}

/** The transcript as readable lines: who, then the text, or the tool with its status, input and output. */
export function transcriptText(entries: TranscriptEntry[], omitted: number): string {
  if (entries.length === 0 && omitted === 0) return "Transcript: nothing yet.";
  const head = `Transcript (${entries.length} entries${omitted ? `; the ${omitted} oldest left out to keep it short` : ""}):`;
  const lines = entries.map((e) =>
    e.type === "text"
      ? `[${e.role}] ${e.text ?? ""}`
      : `[${e.role}] tool ${e.tool ?? "?"} (${e.status ?? "?"})\n  input: ${e.input ?? "{}"}${e.output === undefined ? "" : `\n  output: ${e.output}`}`,
  );
  return [head, ...lines].join("\n");
}

export interface ReportOptions extends TextOptions {
  /** The session's transcript, when asked for (background_output full). */
  transcript?: { entries: TranscriptEntry[]; omitted: number };
}

/** Everything background_output knows about one task, as text: many clients give the model only this. */
export function taskReport(task: Task, options: ReportOptions = {}): string {
  const session = task.session_id
    ? `Session ${task.session_id}${task.parent_session_id ? `, launched from session ${task.parent_session_id}` : ""}.`
    : "";
  const result = task.status === "completed" ? `Result:\n${task.result || "(the agent wrote no text)"}` : "";
  const transcript = options.transcript
    ? transcriptText(options.transcript.entries, options.transcript.omitted)
    : "";
  return [taskSentence(task, options), session, ...progressLines(task.progress), result, transcript].filter(Boolean).join("\n");
}
