import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CLI_OPTIONS, CONFIG_DEFAULTS, configKeys, USAGE } from "../../src/config.js";

/**
 * The config schema is the one place settings are declared; the README tables and `--help` restate them
 * for people. These checks keep the restatements from drifting.
 */

interface Row {
  line: string;
  flags: string[];
  keys: string[];
  defaultCell: string;
}

const TABLE_HEADER = "| Flag / env | Config key | Default | Meaning |";

/** Every row of the README's configuration tables (the ones with TABLE_HEADER). */
function readmeRows(): Row[] {
  const lines = readFileSync(new URL("../../README.md", import.meta.url), "utf8").split("\n");
  const rows: Row[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== TABLE_HEADER) continue;
    for (let j = i + 2; j < lines.length && lines[j]!.startsWith("|"); j++) {
      const [flagCell, keyCell, defaultCell] = lines[j]!.split("|").slice(1).map((cell) => cell.trim());
      rows.push({
        line: lines[j]!,
        flags: codeSpans(flagCell!).filter((span) => span.startsWith("--")).map((span) => span.split(/[ =]/)[0]!),
        keys: codeSpans(keyCell!),
        defaultCell: defaultCell!,
      });
    }
  }
  return rows;
}

function codeSpans(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((match) => match[1]!);
}

/** The value a Default cell starts with: "1800000 (30 min; 0 = none)" -> "1800000". */
function leadingValue(cell: string): string {
  return /^[^\s,;(]*/.exec(cell)![0];
}

/** The schema's default at a dotted path; undefined when the setting has none known before run time. */
function defaultAt(key: string): unknown {
  let value: unknown = CONFIG_DEFAULTS;
  for (const part of key.split(".")) value = (value as Record<string, unknown> | undefined)?.[part];
  return value;
}

/** USAGE's entry for each flag: its line and the indented lines that continue it. */
function usageEntries(): Map<string, string> {
  const entries = new Map<string, string>();
  let current: string | undefined;
  for (const line of USAGE.split("\n")) {
    const start = /^ {2}(--[a-z-]+)/.exec(line);
    if (start) entries.set((current = start[1]!), line);
    else if (current && /^ {4,}\S/.test(line)) entries.set(current, `${entries.get(current)}\n${line}`);
    else current = undefined;
  }
  return entries;
}

/** Reports names missing on either side by name (a sorted-array diff would be truncated). */
function expectSameNames(shown: string[], declared: string[], shownWhere: string, declaredWhere: string): void {
  expect(declared.filter((name) => !shown.includes(name)), `missing ${shownWhere}`).toEqual([]);
  expect(shown.filter((name) => !declared.includes(name)), `not ${declaredWhere}`).toEqual([]);
}

const flags = Object.keys(CLI_OPTIONS).map((name) => `--${name}`);

describe("README configuration tables", () => {
  const rows = readmeRows();

  it("are found", () => {
    expect(rows.length).toBeGreaterThan(20);
  });

  it("name every setting of the schema, and only those, one per row", () => {
    for (const row of rows) expect(row.keys.length, row.line).toBeLessThanOrEqual(1);
    expectSameNames(rows.flatMap((row) => row.keys), configKeys(), "in the README table", "in the schema");
  });

  it("show each setting's default as the schema declares it", () => {
    for (const row of rows) {
      for (const key of row.keys) {
        const value = defaultAt(key);
        const cell = row.defaultCell.replaceAll("`", "");
        if (value === undefined) expect(cell, `${key} has no default in the schema; the README should say what happens without it`).not.toBe("");
        else expect(leadingValue(cell), `README default of ${key} (${cell})`).toBe(String(value));
      }
    }
  });

  it("name every flag but --help and --version", () => {
    const documented = new Set(rows.flatMap((row) => row.flags));
    for (const flag of flags.filter((flag) => flag !== "--help" && flag !== "--version")) expect(documented, flag).toContain(flag);
    for (const flag of documented) expect(flags, `README names ${flag}, which parseCli does not take`).toContain(flag);
  });
});

describe("--help", () => {
  const entries = usageEntries();

  it("describes every flag parseCli takes, and only those", () => {
    expectSameNames([...entries.keys()], flags, "in --help", "among parseCli's flags");
  });

  it("shows the schema's default for each flag with a value that sets a config key", () => {
    let checked = 0;
    for (const row of readmeRows()) {
      for (const flag of row.flags) {
        const value = row.keys[0] === undefined ? undefined : defaultAt(row.keys[0]);
        if (value === undefined || CLI_OPTIONS[flag.slice(2) as keyof typeof CLI_OPTIONS].type !== "string") continue;
        expect(entries.get(flag), `--help for ${flag}`).toContain(`default ${String(value)}`);
        checked++;
      }
    }
    // --concurrency, --transport, --host, --port
    expect(checked).toBeGreaterThanOrEqual(4);
  });
});
