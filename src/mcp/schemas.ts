import { z } from "zod";
import { TASK_STATUSES } from "../tasks/task.js";

/** Zod schemas for everything that crosses the MCP boundary: the single source of truth for the tools. */

export const MAX_BLOCK_MS = 10 * 60 * 1000;

const nonEmpty = (what: string) => z.string().trim().min(1, `${what} must not be empty`);

/**
 * A tool's parameters, published closed (`additionalProperties: false`). The tool itself refuses others
 * (`unknownParameters`), so the parse lets them through: the SDK's own refusal would be wrapped in protocol
 * text and, for a task-augmented background_task call, would not even be a CreateTaskResult.
 */
const toolParameters = <Shape extends z.ZodRawShape>(shape: Shape) => z.looseObject(shape).meta({ additionalProperties: false });

/** The refusal of a call with parameters `tool` does not take (a typo, a feature this version lacks), or null. */
export function unknownParameters(tool: string, parameters: z.ZodObject, args: object): string | null {
  const allowed = Object.keys(parameters.shape);
  const unknown = Object.keys(args).filter((key) => !Object.hasOwn(parameters.shape, key));
  if (unknown.length === 0) return null;
  const named = unknown.map((key) => JSON.stringify(key.length > 60 ? `${key.slice(0, 59)}…` : key));
  return `${tool} does not take ${named.join(", ")}; allowed: ${allowed.join(", ")}`;
}

export const BackgroundTaskInput = toolParameters({
  description: nonEmpty("description").max(200).describe("A short (3-10 words) description of the task, shown in lists and notifications"),
  prompt: nonEmpty("prompt").describe("The full instructions for the background agent (at most 1 MB)"),
  agent: nonEmpty("agent").describe("The opencode agent that runs the task, e.g. \"explore\" or \"general\""),
  model: z
    .string()
    .regex(/^[^/\s]+\/\S+$/, 'model must be "provider/model", e.g. "anthropic/claude-sonnet-4"')
    .optional()
    .describe('Model override as "provider/model"; default: the agent\'s model'),
  parent_session_id: z
    .string()
    .min(1)
    .optional()
    .describe("opencode session to prompt when the task ends (the child session is created under it)"),
  timeout_ms: z
    .number()
    .int()
    .positive()
    .max(24 * 60 * 60 * 1000)
    .optional()
    .describe("Abort the task and end it with an error after this many milliseconds"),
});

export const BackgroundOutputInput = toolParameters({
  task_id: z.string().min(1).optional().describe("The task to read; omit to list all tasks, newest first"),
  block: z.boolean().default(false).describe("Wait until the task is finished (or timeout_ms passes)"),
  timeout_ms: z
    .number()
    .int()
    .min(0)
    .max(MAX_BLOCK_MS)
    .default(30_000)
    .describe("How long block waits, in ms (at most 600000 = 10 minutes)"),
  full: z.boolean().default(false).describe("Also return the transcript: messages and tool calls"),
  limit: z.number().int().min(1).max(500).default(50).describe("When listing (no task_id): tasks per page, newest first"),
  cursor: z.string().min(1).optional().describe("When listing: the next_cursor of the previous page"),
});

export const BackgroundCancelInput = toolParameters({
  task_id: z.string().min(1).optional().describe("The task to cancel"),
  all: z.boolean().optional().describe("Cancel every queued and running task"),
});

const Status = z.enum(TASK_STATUSES);

export const Progress = z.object({
  tool_calls: z.number().int().min(0),
  last_tool: z.string().nullable(),
  last_message: z.string().nullable(),
  incomplete_todos: z.array(z.object({ content: z.string(), status: z.string() })).optional(),
  retry: z.object({ attempt: z.number(), message: z.string(), next_at: z.string() }).nullable().optional(),
  permission: z
    .object({ request_id: z.string(), permission: z.string(), patterns: z.array(z.string()), decision: z.string() })
    .nullable()
    .optional(),
  todo_continuations: z.number().int().optional(),
  stalled_since: z.string().nullable().optional(),
});

export const TranscriptEntry = z.object({
  role: z.enum(["user", "assistant"]),
  type: z.enum(["text", "tool"]),
  text: z.string().optional(),
  tool: z.string().optional(),
  status: z.string().optional(),
  input: z.string().optional(),
  output: z.string().optional(),
});

export const TaskView = z.object({
  task_id: z.string(),
  status: Status,
  agent: z.string(),
  description: z.string(),
  session_id: z.string().nullable(),
  parent_session_id: z.string().nullable(),
  created_at: z.string(),
  started_at: z.string().nullable(),
  completed_at: z.string().nullable(),
  duration_ms: z.number().int().nullable(),
  queue_position: z.number().int().positive().nullable(),
  progress: Progress,
  result: z.string().nullable(),
  error: z.string().nullable(),
  messages: z.array(TranscriptEntry).optional(),
  messages_omitted: z.number().int().optional(),
});
export type TaskView = z.infer<typeof TaskView>;

/**
 * A launch answers with the first six fields (status queued or running). Through MCP Tasks, the same
 * call's final result (tasks/result) is the task's full view, as background_output gives it.
 */
export const BackgroundTaskOutput = {
  ...TaskView.partial().shape,
  task_id: z.string(),
  status: Status,
  agent: z.string(),
  description: z.string(),
  session_id: z.string().nullable(),
  queue_position: z.number().int().positive().nullable(),
};

/** One task, or (without task_id) the list. Both shapes validate against this. */
export const BackgroundOutputOutput = {
  ...TaskView.partial().shape,
  tasks: z.array(TaskView).optional(),
  /** When listing: pass it back as `cursor` for the next page; null on the last page. */
  next_cursor: z.string().nullable().optional(),
};

export const BackgroundCancelOutput = {
  cancelled: z.array(z.string()),
  skipped: z.array(z.object({ task_id: z.string(), reason: z.string() })),
};
