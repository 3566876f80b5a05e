import os from "node:os";
import { figure, type Figure } from "./stats.js";

export interface Machine {
  cores: Figure;
  cpu_model: string;
  memory: Figure;
  node: string;
  platform: string;
  opencode: string;
}

export function describeMachine(opencodeVersion: string): Machine {
  return {
    cores: figure(os.availableParallelism(), "cores"),
    cpu_model: os.cpus()[0]?.model.trim() ?? "unknown",
    memory: figure(Math.round(os.totalmem() / 1024 / 1024), "MB"),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    opencode: opencodeVersion,
  };
}
