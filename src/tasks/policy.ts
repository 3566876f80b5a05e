import { z } from "zod";

/**
 * The config file's sections that guard tasks: every limit and reaction to a fault, each declared once
 * with its default and description. config.ts makes them part of the config file; `TaskPolicy` is what
 * they parse to.
 */
export const PolicySections = {
  timeouts: z
    .strictObject({
      taskMs: z.number().int().min(0).default(30 * 60_000).describe("Timeout in ms for tasks launched without timeout_ms; 0 = none"),
      stallMs: z.number().int().min(1_000).default(5 * 60_000).describe("A running task with no events for this long (ms) is checked against opencode"),
    })
    .prefault({}),
  permissions: z
    .strictObject({
      onAsk: z
        .enum(["reject", "allow", "wait"])
        .default("reject")
        .describe('The answer when a background session asks for a permission; "wait" leaves it to a human'),
    })
    .prefault({}),
  todos: z
    .strictObject({
      continuations: z.number().int().min(0).max(20).default(2).describe("Continue prompts sent to a session that goes idle with incomplete todos"),
    })
    .prefault({}),
  limits: z
    .strictObject({
      maxToolCalls: z.number().int().min(1).default(500).describe("Tool calls one task may make before it is stopped"),
      maxRepeatedToolCalls: z.number().int().min(2).default(20).describe("The same tool with the same input this many times in a row stops the task"),
      maxQueuedPerAgent: z.number().int().min(1).default(1_000).describe("Tasks that may wait for a slot per agent; beyond, a launch is refused"),
      maxResultChars: z.number().int().min(1_000).default(100_000).describe("Longest result kept, in characters; a longer one keeps its head and tail"),
      maxDepth: z
        .number()
        .int()
        .min(1)
        .max(10)
        .default(3)
        .describe("How deep background tasks may launch background tasks (1 = only from outside); the deepest sessions are not offered this server's tools"),
    })
    .prefault({}),
};

const PolicyConfig = z.object(PolicySections);
/** The policy sections of a parsed config file. */
export type PolicyConfig = z.output<typeof PolicyConfig>;

/** Which config file setting (section, key) each TaskPolicy field reads. */
const POLICY_FIELDS = {
  taskTimeoutMs: ["timeouts", "taskMs"],
  stallMs: ["timeouts", "stallMs"],
  onPermission: ["permissions", "onAsk"],
  todoContinuations: ["todos", "continuations"],
  maxToolCalls: ["limits", "maxToolCalls"],
  maxRepeatedToolCalls: ["limits", "maxRepeatedToolCalls"],
  maxQueuedPerAgent: ["limits", "maxQueuedPerAgent"],
  maxResultChars: ["limits", "maxResultChars"],
  maxDepth: ["limits", "maxDepth"],
} as const satisfies Record<string, SettingPath>;

type SettingPath = { [S in keyof PolicyConfig]: { [K in keyof PolicyConfig[S]]: readonly [S, K] }[keyof PolicyConfig[S]] }[keyof PolicyConfig];
type SettingAt<Path> = Path extends readonly [infer S extends keyof PolicyConfig, infer K]
  ? K extends keyof PolicyConfig[S]
    ? PolicyConfig[S][K]
    : never
  : never;
/** A policy setting no TaskPolicy field reads would be accepted in the config file and then ignored: it does not compile. */
type _EverySettingIsRead = Unread<Exclude<SettingPath, (typeof POLICY_FIELDS)[keyof typeof POLICY_FIELDS]>>;
type Unread<Path extends never> = Path;

/** How tasks are guarded, flat; see PolicySections for what each field means and its default. */
export type TaskPolicy = { [F in keyof typeof POLICY_FIELDS]: SettingAt<(typeof POLICY_FIELDS)[F]> };

export function policyFrom(config: PolicyConfig): TaskPolicy {
  const read = (path: SettingPath): unknown => (config[path[0]] as Record<string, unknown>)[path[1]];
  return Object.fromEntries(Object.entries(POLICY_FIELDS).map(([field, path]) => [field, read(path)])) as TaskPolicy;
}

export const DEFAULT_POLICY: TaskPolicy = policyFrom(PolicyConfig.parse({}));

export const TODO_CONTINUE_PROMPT =
  "You stopped with todos still open. Continue working through the remaining todos, and finish them.";
