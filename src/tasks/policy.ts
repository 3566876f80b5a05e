/** How tasks are guarded: every limit and reaction to a fault, in one place, with its default. */
export interface TaskPolicy {
  /** Timeout for tasks launched without `timeout_ms`, in ms; 0 = none. (`timeouts.taskMs`) */
  taskTimeoutMs: number;
  /** A running task with no events for this long is checked against opencode. (`timeouts.stallMs`) */
  stallMs: number;
  /** What to answer when a background session asks for a permission; "wait" leaves it to a human. (`permissions.onAsk`) */
  onPermission: "reject" | "allow" | "wait";
  /** Continue prompts sent to a session that goes idle with incomplete todos. (`todos.continuations`) */
  todoContinuations: number;
  /** Tool calls one task may make before it is stopped. (`limits.maxToolCalls`) */
  maxToolCalls: number;
  /** The same tool with the same input this many times in a row stops the task. (`limits.maxRepeatedToolCalls`) */
  maxRepeatedToolCalls: number;
  /** Tasks that may wait for a slot per agent; beyond, a launch is refused. (`limits.maxQueuedPerAgent`) */
  maxQueuedPerAgent: number;
  /** Longest result kept, in characters; a longer one keeps its head and tail. (`limits.maxResultChars`) */
  maxResultChars: number;
  /**
   * How deep background tasks may launch background tasks (1 = only from outside). Sessions at the
   * deepest level are not offered this server's tools at all. (`limits.maxDepth`)
   */
  maxDepth: number;
}

export const DEFAULT_POLICY: TaskPolicy = {
  taskTimeoutMs: 30 * 60_000,
  stallMs: 5 * 60_000,
  onPermission: "reject",
  todoContinuations: 2,
  maxToolCalls: 500,
  maxRepeatedToolCalls: 20,
  maxQueuedPerAgent: 1_000,
  maxResultChars: 100_000,
  maxDepth: 3,
};

export const TODO_CONTINUE_PROMPT =
  "You stopped with todos still open. Continue working through the remaining todos, and finish them.";
