import envPaths from "env-paths";
import { accessSync, constants, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { StoreError } from "./sqlite-store.js";

/** The per-user data directory of the platform (e.g. ~/.local/share/background-agents-mcp on Linux). */
export function defaultDataDir(): string {
  return envPaths("background-agents-mcp", { suffix: "" }).data;
}

interface LockOwner {
  pid: number;
  host: string;
  started: string;
}

/** The data directory, held by this process alone until `release()`. */
export interface DataDir {
  dir: string;
  databasePath: string;
  release(): void;
}

/**
 * Prepares `dir` and takes its lock: one server per data dir. A lock whose process is gone (same host)
 * is stale and taken over; a live one is refused with a message naming the other process.
 */
export function openDataDir(dir: string): DataDir {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (error) {
    throw new StoreError(`data dir ${dir} is not writable (${(error as Error).message}); choose another with --data-dir`);
  }
  const lockPath = join(dir, "server.lock");
  const me: LockOwner = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lockPath, JSON.stringify(me), { flag: "wx" });
      return {
        dir,
        databasePath: join(dir, "tasks.db"),
        release: () => {
          if (readOwner(lockPath)?.pid === me.pid) rmSync(lockPath, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new StoreError(`cannot create the lock file ${lockPath}: ${(error as Error).message}`);
      }
    }
    const owner = readOwner(lockPath);
    if (owner && owner.host === me.host && isAlive(owner.pid)) {
      throw new StoreError(
        `data dir ${dir} is in use by another background-agents-mcp (pid ${owner.pid} on ${owner.host}, started ${owner.started}); ` +
          `stop it or give this one another --data-dir`,
      );
    }
    if (owner && owner.host !== me.host) {
      throw new StoreError(
        `data dir ${dir} is locked by a background-agents-mcp on another host (${owner.host}, pid ${owner.pid}); ` +
          `if that server is gone, delete ${lockPath}`,
      );
    }
    rmSync(lockPath, { force: true }); // stale: its process is gone
  }
  throw new StoreError(`could not take the lock ${lockPath}: another server is starting on the same data dir`);
}

function readOwner(path: string): LockOwner | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as LockOwner;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
