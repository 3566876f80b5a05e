// What `npm pack` publishes is the product only: the build of src/, never tests, benchmarks, the scripted
// model, the sandbox or the demo. The build runs here into a scratch copy of the package (the same tsconfig
// and package.json), so the check does not depend on what an earlier build or bench left in dist/.
import { execFile } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { isAbsolute, join, relative } from "node:path";
import { promisify } from "node:util";
import ts from "typescript";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../dev/paths.js";

const run = promisify(execFile);
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const scratch = mkdtempSync(join(tmpdir(), "pack-"));
const published: string[] = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")).files;

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Whether a repository-relative path lies under one of package.json's "files" entries. */
const isPublished = (path: string): boolean => published.some((entry) => path === entry || path.startsWith(`${entry}/`));

/** The outDir a tsconfig resolves to, relative to the repository. */
function outDirOf(tsconfig: string): string {
  const file = join(REPO_ROOT, tsconfig);
  const { config, error } = ts.readConfigFile(file, ts.sys.readFile);
  if (error) throw new Error(ts.flattenDiagnosticMessageText(error.messageText, "\n"));
  const outDir = ts.parseJsonConfigFileContent(config, ts.sys, join(file, "..")).options.outDir;
  if (!outDir) throw new Error(`${tsconfig} has no outDir`);
  return relative(REPO_ROOT, outDir);
}

describe("the published package", () => {
  it("lists the built CLI and no test, bench, dev, demo, model-server or sandbox file", async () => {
    await run(process.execPath, [tsc, "-p", join(REPO_ROOT, "tsconfig.build.json"), "--outDir", join(scratch, "dist")]);
    for (const file of ["package.json", "README.md"]) copyFileSync(join(REPO_ROOT, file), join(scratch, file));
    const { stdout } = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: scratch });
    const paths: string[] = JSON.parse(stdout)[0].files.map((f: { path: string }) => f.path);

    expect(paths).toContain("dist/cli.js");
    expect(paths.filter((p) => /(^|\/)(test|bench|dev)\//.test(p) || /demo|model-server|sandbox|\.test\./.test(p))).toEqual([]);
  }, 120_000);

  it("the demo and the bench compile outside every published folder", () => {
    for (const tsconfig of ["dev/tsconfig.json", "bench/tsconfig.json"]) {
      const outDir = outDirOf(tsconfig);
      expect(isAbsolute(outDir) || outDir.startsWith(".."), `${tsconfig} compiles outside the repository: ${outDir}`).toBe(false);
      expect(isPublished(outDir), `${tsconfig} compiles into ${outDir}, which package.json "files" publishes`).toBe(false);
    }
  });
});
