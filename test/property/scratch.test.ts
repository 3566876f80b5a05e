import { it, vi } from "vitest";
import { TaskWorld, type KnownBug } from "../support/task-world.js";
const policy = {stallMs:2000,maxToolCalls:4,maxRepeatedToolCalls:3,maxQueuedPerAgent:4,onPermission:"reject" as const,todoContinuations:0};
const tolerate: KnownBug[] = [];
it("debug1", async () => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] });
  const w = await TaskWorld.create({limits:{explore:1,general:1,plan:1}, tolerate, sim:{seed:0,latency:1,busyDelayMs:0}, policy});
  const step = async (label: string, f: () => unknown, p: number | "settle" = "settle") => { w.note("> " + label); await f(); await w.pause(p); w.check(); };
  await step("launch", () => w.launch("explore", 400));
  await step("dupidle", () => w.sim.emitDuplicateIdle(w.sessionOf(w.pick(0)!)!));
  await step("retry", () => w.sim.retry(w.sessionOf(w.pick(0)!)!), 1);
  await step("reach", () => w.sim.setUnreachable(false));
  await w.drain(); await w.checkEnd();
  console.log(w.report());
  w.dispose();
});
