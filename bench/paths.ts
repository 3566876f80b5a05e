import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** The repository root: the nearest directory above this file with a package.json (source or compiled). */
export const REPO_ROOT = ((): string => {
  for (let dir = here; dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
  }
  throw new Error(`no package.json above ${here}`);
})();

/** The server under test: the normal build, exactly what users run. */
export const OUR_CLI = join(REPO_ROOT, "dist", "cli.js");

/** The seed baseline's MCP server, compiled next to this file. */
export const SEED_SERVER = join(here, "seed-server.js");

export const DEFAULT_RESULTS = join(REPO_ROOT, "bench", "results.json");
