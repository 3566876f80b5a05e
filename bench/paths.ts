import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BUILT_CLI, REPO_ROOT } from "../dev/paths.js";

export { REPO_ROOT };

const here = dirname(fileURLToPath(import.meta.url));

/** The server under test: the normal build, exactly what users run. */
export const OUR_CLI = BUILT_CLI;

/** The seed baseline's MCP server, compiled next to this file. */
export const SEED_SERVER = join(here, "seed-server.js");

export const DEFAULT_RESULTS = join(REPO_ROOT, "bench", "results.json");
