// Before any test file: make sure the real PostgreSQL answers (CI starts it), and drop databases that
// earlier interrupted runs left behind (hours old; a concurrent run's databases are left alone).
import pg from "pg";
import { ADMIN_URL, STALE_TEST_DB_SECONDS, TEST_DB_PREFIX, testDatabaseAge } from "./databases.js";

export default async function setup(): Promise<void> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  try {
    await client.connect();
  } catch (err) {
    throw new Error(
      `the tests need PostgreSQL at ${ADMIN_URL} (start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start): ${(err as Error).message}`,
    );
  }
  const { rows } = await client.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE $1", [
    `${TEST_DB_PREFIX}%`,
  ]);
  // Only stale ones: another run (a second checkout, a benchmark) may be using the fresh ones right now.
  for (const { datname } of rows) {
    const age = testDatabaseAge(datname);
    if (age !== undefined && age > STALE_TEST_DB_SECONDS) {
      await client.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
  }
  await client.end();
}
