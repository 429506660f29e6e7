// npm run test:chaos — crashes, restarts, a database going away, several processes. These files stop and start
// processes (and a PostgreSQL server of their own), so they run one at a time, after the main suite, never beside
// other tests.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/chaos/**/*.test.ts"],
    pool: "forks",
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 300_000,
    hookTimeout: 120_000,
    globalSetup: ["test/helpers/globalSetup.ts"],
    reporters: ["default"],
  },
});
