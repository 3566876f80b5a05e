import { afterEach, describe, expect, it, vi } from "vitest";
import { EventWatcher } from "../../src/opencode/event-watcher.js";
import { LaunchChecks } from "../../src/tasks/launch-checks.js";
import { SimulatedOpencode } from "../support/simulated-opencode.js";

describe("LaunchChecks: what a launch checks, known without a round trip", () => {
  let stop: () => void = () => undefined;
  afterEach(() => stop());

  async function setup(): Promise<{ sim: SimulatedOpencode; checks: LaunchChecks; calls: () => Record<string, number> }> {
    const sim = new SimulatedOpencode({ agents: ["explore", "general"], latency: 2 });
    const events = new EventWatcher(sim);
    const checks = new LaunchChecks(sim, events);
    events.start();
    checks.start();
    stop = () => {
      checks.stop();
      events.stop();
    };
    await events.ready(1_000);
    await sim.settle();
    const spies = { agents: vi.spyOn(sim, "agents"), health: vi.spyOn(sim, "health"), sessionExists: vi.spyOn(sim, "sessionExists") };
    const calls = (): Record<string, number> => Object.fromEntries(Object.entries(spies).map(([k, s]) => [k, s.mock.calls.length]));
    return { sim, checks, calls };
  }

  it("asks opencode nothing for a known agent while the event stream is connected", async () => {
    const { checks, calls } = await setup();
    await checks.reachable();
    expect(await checks.agentsFor("explore")).toContain("explore");
    expect(calls()).toEqual({ agents: 0, health: 0, sessionExists: 0 });
  });

  it("refreshes the list once for concurrent misses, and then knows a new agent", async () => {
    const { sim, checks, calls } = await setup();
    sim.addAgent("reviewer");
    const lists = await Promise.all([checks.agentsFor("reviewer"), checks.agentsFor("reviewer"), checks.agentsFor("nope")]);
    expect(calls().agents).toBe(1);
    for (const list of lists) expect(list).toEqual(expect.arrayContaining(["reviewer", "explore", "general"]));
    expect(lists[2]).not.toContain("nope");
    expect(lists[2]).not.toContain("title"); // hidden agents are not launchable
    await checks.agentsFor("reviewer");
    expect(calls().agents).toBe(1);
  });

  it("fails at once, naming the URL, when opencode goes down", async () => {
    const { sim, checks } = await setup();
    sim.setUnreachable(true);
    await expect(checks.reachable()).rejects.toThrow(`opencode is unreachable at ${sim.url}`);
  });

  it("knows sessions seen on the event stream, and asks opencode only about others", async () => {
    const { sim, checks, calls } = await setup();
    const seen = await sim.createSession({ title: "caller" });
    await sim.settle();
    expect(await checks.sessionExists(seen)).toBe(true);
    expect(calls().sessionExists).toBe(0);
    expect(await checks.sessionExists("ses_unknown")).toBe(false);
    expect(calls().sessionExists).toBe(1);
    await sim.deleteSession(seen);
    await sim.settle();
    expect(await checks.sessionExists(seen)).toBe(false);
  });
});
