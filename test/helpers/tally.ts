// Starts a Tally on a test database, with a known admin key, and helpers to call it.
import { type Clock, ManualClock } from "../../src/clock.js";
import { type Config, loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { createTally, type Tally } from "../../src/tally.js";
import { createTestDatabase, type TestBackend, type TestDatabase } from "./databases.js";

export const ADMIN_KEY = "test-admin-key-0123456789abcdef";

export interface TestTally {
  backend: TestBackend;
  tally: Tally;
  database: TestDatabase;
  clock: Clock;
  config: Config;
  close(): Promise<void>;
}

export function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig({
    TALLY_ADMIN_KEY: ADMIN_KEY,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
    TALLY_JOBS: "off",
    ...overrides,
  });
}

export async function startTestTally(
  backend: TestBackend,
  opts: { clock?: Clock; env?: Record<string, string>; database?: TestDatabase; webDirectory?: string } = {},
): Promise<TestTally> {
  const database = opts.database ?? (await createTestDatabase(backend));
  const config = testConfig({ ...(database.url ? { DATABASE_URL: database.url } : {}), ...opts.env });
  // A manual clock, at the real time of the start, unless the test brings its own (systemClock for real schedules).
  const clock = opts.clock ?? new ManualClock(new Date());
  const opened = await database.open();
  const tally = await createTally({
    config,
    clock,
    logger: createLogger(config.LOG_LEVEL),
    database: opened,
    ownsDatabase: true,
    ...(opts.webDirectory ? { webDirectory: opts.webDirectory } : {}),
  });
  return {
    backend,
    tally,
    database,
    clock,
    config,
    async close() {
      await tally.shutdown();
      if (!opts.database) await database.drop();
    },
  };
}

export const bearer = (key: string) => ({ Authorization: `Bearer ${key}` });
export const admin = bearer(ADMIN_KEY);
