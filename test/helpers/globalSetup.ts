// Before any test file: make sure the real PostgreSQL answers (CI starts it), and drop databases that
// earlier interrupted runs left behind.
import pg from "pg";
import { ADMIN_URL, TEST_DB_PREFIX } from "./databases.js";

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
  for (const { datname } of rows) await client.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  await client.end();
}
