import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { defaultDataDir, openDataDir, type DataDir } from "../../src/tasks/data-dir.js";
import { SqliteTaskStore, StoreError } from "../../src/tasks/sqlite-store.js";

let root: string;
let dir: string;
const held: DataDir[] = [];

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "bam-datadir-"));
  dir = join(root, "data");
});

afterEach(() => {
  for (const d of held.splice(0)) d.release();
  chmodSync(root, 0o700);
  rmSync(root, { recursive: true, force: true });
});

function open(at = dir): DataDir {
  const d = openDataDir(at);
  held.push(d);
  return d;
}

const lockPath = (): string => join(dir, "server.lock");
const lockOwner = (): { pid: number; host: string; started: string } => JSON.parse(readFileSync(lockPath(), "utf8"));
function writeLock(owner: { pid: number; host?: string }): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(lockPath(), JSON.stringify({ host: hostname(), started: "2025-01-01T00:00:00.000Z", ...owner }));
}

/** The StoreError `fn` throws (fails the test when it throws nothing or something else). */
function storeErrorOf(fn: () => unknown): StoreError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(StoreError);
    return error as StoreError;
  }
  throw new Error("expected a StoreError, nothing was thrown");
}

/** A pid that belonged to a process that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ["-e", ""]);
  expect(child.status).toBe(0);
  expect(() => process.kill(child.pid!, 0)).toThrow();
  return child.pid!;
}

describe("openDataDir", () => {
  it("creates the directory, takes the lock with this process's pid and host, and releases it", () => {
    const d = open();
    expect(d.dir).toBe(dir);
    expect(d.databasePath).toBe(join(dir, "tasks.db"));
    expect(existsSync(lockPath())).toBe(true);
    expect(lockOwner()).toMatchObject({ pid: process.pid, host: hostname() });
    expect(Number.isNaN(Date.parse(lockOwner().started))).toBe(false);

    d.release();
    expect(existsSync(lockPath())).toBe(false);
    d.release(); // twice is harmless

    // free again: the next server takes it
    open().release();
  });

  it("holds a store in its database path", () => {
    const d = open();
    const store = new SqliteTaskStore(d.databasePath);
    expect(store.count()).toBe(0);
    store.close();
    expect(existsSync(d.databasePath)).toBe(true);
  });

  it("refuses a second open while the lock is held, naming the holder's pid", () => {
    const first = open();
    const error = storeErrorOf(() => open());
    expect(error.message).toContain(`pid ${process.pid}`);
    expect(error.message).toContain(dir);
    // the refusal leaves the holder's lock alone
    expect(lockOwner().pid).toBe(process.pid);
    first.release();
    open();
  });

  it("refuses a lock held by another live process, naming its pid", async () => {
    const other = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60_000)"], { stdio: "ignore" });
    try {
      await new Promise((resolve, reject) => other.once("spawn", resolve).once("error", reject));
      writeLock({ pid: other.pid! });
      const error = storeErrorOf(() => open());
      expect(error.message).toContain(`pid ${other.pid}`);
      expect(error.message).toContain("in use");
      expect(lockOwner().pid).toBe(other.pid);
    } finally {
      other.kill();
    }
  });

  it("takes over a stale lock whose process is gone", () => {
    const pid = deadPid();
    writeLock({ pid });
    const d = open();
    expect(lockOwner()).toMatchObject({ pid: process.pid, host: hostname() });
    d.release();
    expect(existsSync(lockPath())).toBe(false);
  });

  it("takes over a lock with a pid no process can have", () => {
    writeLock({ pid: 2 ** 22 + 12_345 }); // above Linux's largest pid_max
    open();
    expect(lockOwner().pid).toBe(process.pid);
  });

  it("takes over an empty or unreadable lock file (a crash while writing it)", () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(lockPath(), "");
    open().release();
    writeFileSync(lockPath(), "{ not json");
    open();
    expect(lockOwner().pid).toBe(process.pid);
  });

  it("refuses a lock taken on another host, naming the host and the lock file", () => {
    writeLock({ pid: process.pid, host: "some-other-host" });
    const error = storeErrorOf(() => open());
    expect(error.message).toContain("some-other-host");
    expect(error.message).toContain(lockPath());
    expect(lockOwner().host).toBe("some-other-host");
  });

  it("release() leaves a lock that another server has since taken", () => {
    const d = open();
    writeLock({ pid: process.pid + 1 });
    d.release();
    expect(existsSync(lockPath())).toBe(true);
  });

  it("says a location under a regular file is not writable", () => {
    const file = join(root, "a-file");
    writeFileSync(file, "not a directory");
    const at = join(file, "data");
    const error = storeErrorOf(() => open(at));
    expect(error.message).toContain(at);
    expect(error.message).toContain("not writable");
  });

  it.skipIf(process.getuid?.() === 0)("says a read-only directory is not writable", () => {
    mkdirSync(dir);
    chmodSync(dir, 0o500);
    const error = storeErrorOf(() => open());
    expect(error.message).toContain("not writable");
    chmodSync(dir, 0o700);
  });

  it("has a per-user default location", () => {
    expect(defaultDataDir()).toMatch(/background-agents-mcp/);
  });
});
