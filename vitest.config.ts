import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 90_000,
    // End-to-end files each start a real opencode server; two cores cannot run many at once.
    maxWorkers: 2,
    // Quiet the servers' stderr logs in test output (a test that reads them sets its own level).
    env: { BACKGROUND_AGENTS_LOG_LEVEL: "warn" },
  },
});
