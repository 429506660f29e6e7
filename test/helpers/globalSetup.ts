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
  const { rows } = await client.query<{ datname: string; connections: string }>(
    `SELECT d.datname, (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname) AS connections
     FROM pg_database d WHERE d.datname LIKE $1`,
    [`${TEST_DB_PREFIX}%`],
  );
  for (const { datname, connections } of rows) {
    if (!isLeftover(datname, Number(connections))) continue;
    await client.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  }
  await client.end();
}

/**
 * Another test run may be using the same server right now (several worktrees, one PostgreSQL): only databases
 * created over an hour ago are leftovers. Names without a creation time (older helpers) go only when unused.
 */
function isLeftover(name: string, connections: number): boolean {
  const created = new RegExp(`^${TEST_DB_PREFIX}([0-9a-z]+)_[0-9a-f]{8}$`).exec(name)?.[1];
  if (created === undefined) return connections === 0;
  return Date.now() / 1000 - Number.parseInt(created, 36) > 3600;
}
