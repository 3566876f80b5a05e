/**
 * Diagnostics for operators, one JSON line each on stderr: on stdio, stdout is the MCP channel.
 * Levels below BACKGROUND_AGENTS_LOG_LEVEL (debug | info | warn | error; default info) are dropped.
 */
const LEVELS = ["debug", "info", "warn", "error"] as const;
type Level = (typeof LEVELS)[number];

const threshold = LEVELS.indexOf((process.env.BACKGROUND_AGENTS_LOG_LEVEL as Level | undefined) ?? "info");

function write(level: Level, message: string, fields?: Record<string, unknown>): void {
  if (LEVELS.indexOf(level) < threshold) return;
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, message, ...fields })}\n`);
}

export const log = {
  debug: (message: string, fields?: Record<string, unknown>) => write("debug", message, fields),
  info: (message: string, fields?: Record<string, unknown>) => write("info", message, fields),
  warn: (message: string, fields?: Record<string, unknown>) => write("warn", message, fields),
  error: (message: string, fields?: Record<string, unknown>) => write("error", message, fields),
};
