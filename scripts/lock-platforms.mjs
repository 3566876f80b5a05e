// The npm registry reachable here serves opencode-ai's binary only for this platform, so `npm install`
// leaves the other platforms' optional packages out of package-lock.json, and `npm ci` then refuses the
// lock as out of sync. This adds lock entries for them (os/cpu/libc only: npm skips them on this
// platform without fetching). Run after any `npm install`: node scripts/lock-platforms.mjs
import { readFileSync, writeFileSync } from "node:fs";

const path = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(path, "utf8"));
const opencode = lock.packages["node_modules/opencode-ai"];
const added = [];
for (const name of Object.keys(opencode.optionalDependencies ?? {})) {
  const key = `node_modules/${name}`;
  if (lock.packages[key]) continue;
  const [system, cpu, ...rest] = name.slice("opencode-".length).split("-");
  lock.packages[key] = {
    version: opencode.version,
    cpu: [cpu],
    optional: true,
    os: [system === "windows" ? "win32" : system],
    ...(rest.includes("musl") ? { libc: ["musl"] } : {}),
  };
  added.push(name);
}
const [root, ...rest] = Object.entries(lock.packages);
lock.packages = Object.fromEntries([root, ...rest.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]);
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
console.log(added.length ? `added lock entries: ${added.join(", ")}` : "lock already lists every platform");
