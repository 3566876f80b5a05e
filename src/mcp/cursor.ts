import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";

/**
 * The opaque cursor of a paged list (resources/list, tasks/list): an offset into the owner's tasks,
 * newest first. A task created between two pages shifts the list by one, so a task may appear twice;
 * none is skipped.
 */

export function encodeCursor(offset: number): string {
  return Buffer.from(`offset:${offset}`, "utf8").toString("base64url");
}

/** The offset a cursor stands for (0 without one); `list` names the method in the error for a bad one. */
export function decodeCursor(cursor: string | undefined, list: string): number {
  if (cursor === undefined) return 0;
  const match = /^offset:(\d{1,9})$/.exec(Buffer.from(cursor, "base64url").toString("utf8"));
  if (!match) throw new McpError(ErrorCode.InvalidParams, `Invalid cursor "${cursor}": pass back the nextCursor of an earlier ${list}, or no cursor for the first page`);
  return Number(match[1]);
}
