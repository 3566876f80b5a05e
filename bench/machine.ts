import os from "node:os";
import { figure, type Figure } from "./stats.js";

export interface Machine {
  cores: Figure;
  cpu_model: string;
  memory: Figure;
  node: string;
  platform: string;
  opencode: string;
  /** 1-minute load average when the run started and ended: other work on the machine skews latencies. */
  load_at_start: Figure;
  load_at_end: Figure;
}

export const loadAverage = (): Figure => figure(os.loadavg()[0] ?? 0, "runnable processes (1 min avg)");

export function describeMachine(opencodeVersion: string, loadAtStart: Figure): Machine {
  return {
    cores: figure(os.availableParallelism(), "cores"),
    cpu_model: os.cpus()[0]?.model.trim() ?? "unknown",
    memory: figure(Math.round(os.totalmem() / 1024 / 1024), "MB"),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    opencode: opencodeVersion,
    load_at_start: loadAtStart,
    load_at_end: loadAverage(),
  };
}
