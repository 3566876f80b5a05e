import type { OpencodeApi } from "../opencode/client.js";
import { log } from "../log.js";
import type { TaskRecords } from "./records.js";
import { isTerminal, type Task } from "./task.js";

/**
 * A task's session carries the task id in its title from the moment opencode creates it, so that a
 * session created just before a crash (before the task's record of it was stored) is still known to be
 * the task's. The title is also what people see of the session in opencode's session list.
 */
const MARK = " background bg_";
/** The task id inside a marked title. */
const MARKED = / background (bg_[0-9a-f]+)\)$/;

export function sessionTitle(task: Pick<Task, "id" | "description" | "agent">): string {
  return `${task.description} (@${task.agent} background ${task.id})`;
}

/** The task a session's title marks it as belonging to, if any. */
export function markedTask(title: string): string | undefined {
  return MARKED.exec(title)?.[1];
}

/**
 * After a restart: every marked session created since `since` belongs to exactly one task. A running or
 * queued task without a session gets back the one opencode created for it before the crash; marked
 * sessions their task does not refer to (a second one, or the task ended meanwhile) are deleted.
 * Sessions of tasks this store does not know are left alone: another server may share the opencode.
 */
export async function claimMarkedSessions(api: OpencodeApi, records: TaskRecords, embedded: boolean, since: number): Promise<void> {
  let sessions;
  try {
    sessions = await api.sessions({ search: MARK, since });
  } catch (error) {
    log.warn("could not look for sessions created before a restart", { error: String(error) });
    return;
  }
  // Oldest first, so that a task gets back the first session made for it.
  for (const session of sessions.sort((a, b) => a.created - b.created)) {
    const taskId = markedTask(session.title);
    const task = taskId === undefined ? undefined : records.get(taskId);
    if (!task || task.session_id === session.id) continue;
    if (task.session_id === null && !isTerminal(task.status)) {
      log.info("found the session a task had before a restart", { taskId: task.id, sessionID: session.id });
      records.markSession(task.id, session.id, embedded);
      continue;
    }
    log.info("deleting a session no task refers to", { taskId: task.id, sessionID: session.id });
    await api.deleteSession(session.id).catch((error: unknown) => log.warn("could not delete a session", { sessionID: session.id, error: String(error) }));
  }
}
