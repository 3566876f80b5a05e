import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallerDetection, OurTool } from "../opencode/caller-detector.js";
import type { OwnedTasks } from "./owned-tasks.js";

/**
 * When the MCP client is opencode (the one we follow), the opencode session that made this call.
 * Other clients have no opencode session behind their calls: undefined.
 */
export async function callerOf(
  server: McpServer,
  tasks: OwnedTasks,
  tool: OurTool,
  args: Record<string, unknown>,
): Promise<CallerDetection | undefined> {
  if (server.server.getClientVersion()?.name !== "opencode") return undefined;
  return tasks.detectCaller(tool, args);
}

/** What the launch result says about a parent that was looked for and not (uniquely) found. */
export function detectionNote(detection: CallerDetection | undefined): string {
  if (detection?.kind === "ambiguous") {
    return ` Could not tell which opencode session called (${detection.sessionIDs.length} made the same call), so no parent session will be prompted.`;
  }
  if (detection?.kind === "none") return " The calling opencode session could not be identified, so no parent session will be prompted.";
  return "";
}
