import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // test/chaos stops processes and a PostgreSQL server: npm run test:chaos runs it alone (see .ci/run).
    exclude: ["test/chaos/**", "**/node_modules/**"],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    globalSetup: ["test/helpers/globalSetup.ts"],
    // A deprecation warning (pg's concurrent client.query(), say) fails the test or file that caused it.
    setupFiles: ["test/helpers/nothingDeprecated.ts"],
    reporters: ["default"],
  },
});
