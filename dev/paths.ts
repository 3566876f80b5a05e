import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: the nearest directory above this file with a package.json (source or compiled under out/). */
export const REPO_ROOT = ((): string => {
  const here = dirname(fileURLToPath(import.meta.url));
  for (let dir = here; dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
  }
  throw new Error(`no package.json above ${here}`);
})();

/** The server as users run it: the normal build (`npm run build`). */
export const BUILT_CLI = join(REPO_ROOT, "dist", "cli.js");
