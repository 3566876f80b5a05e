import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { ServerNotification, ServerRequest } from "@modelcontextprotocol/sdk/types.js";
import { log } from "../log.js";

/** How often a waiting request reports progress: well inside any client timeout that progress resets. */
export const PROGRESS_INTERVAL_MS = 3_000;

type Extra = Pick<RequestHandlerExtra<ServerRequest, ServerNotification>, "_meta" | "sendNotification" | "signal">;

/**
 * While a request waits, sends `notifications/progress` every `intervalMs` when the client asked for
 * progress (a `progressToken` in the request), so a client that resets its timeout on progress never
 * times out. `progress` counts the notifications; `message` says what is being waited for. Returns the
 * function that stops it. Sends ride the request's own stream and end with it.
 */
export function progressHeartbeat(extra: Extra, message: () => string, intervalMs = PROGRESS_INTERVAL_MS): () => void {
  const progressToken = extra._meta?.progressToken;
  if (progressToken === undefined) return () => undefined;
  let progress = 0;
  const timer = setInterval(() => {
    if (extra.signal.aborted) return;
    progress += 1;
    extra
      .sendNotification({ method: "notifications/progress", params: { progressToken, progress, message: message() } })
      .catch((error: unknown) => log.debug("could not send a progress notification", { error: String(error) }));
  }, intervalMs);
  return () => clearInterval(timer);
}
