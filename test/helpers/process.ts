// Runs Tally as a real child process (as `npm start` does), to test start-up, restarts and signals.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { watchOutput } from "./deprecations.js";
import { pace } from "./eventually.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface TallyProcess {
  child: ChildProcess;
  url: string;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** `timeoutMs`: a start (tsx compiling, PGlite or migrations) can take long on a busy 2-core machine. */
export async function spawnTally(env: Record<string, string>, timeoutMs = 90_000): Promise<TallyProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  child.stderr?.on("data", (d) => {
    err += d;
  });
  watchOutput(`Tally process ${child.pid}`, () => err);
  const exited = once(child, "exit").then(([code]) => code as number | null);
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL"); // not left running after the test gave up on it
      reject(new Error(`no start within ${timeoutMs} ms:\n${out}\n${err}`));
    }, timeoutMs);
    const check = () => {
      const m = /Tally is running at (http:\/\/\S+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout?.on("data", check);
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before starting:\n${out}\n${err}`));
    });
  });
  return {
    child,
    url,
    stdout: () => out,
    stderr: () => err,
    exited,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Runs Tally expecting it to fail at start; resolves with its exit code and output. */
export async function runTallyExpectingFailure(
  env: Record<string, string>,
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  child.stderr?.on("data", (d) => {
    err += d;
  });
  const [code] = await once(child, "exit");
  return { code: code as number | null, stderr: err };
}

/** Builds dist/ as `npm start` does (the processes below run the built code, not tsx). */
export async function buildDist(): Promise<void> {
  const child = spawn("npm", ["run", "build"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  child.stderr?.on("data", (d) => {
    out += d;
  });
  const [code] = await once(child, "exit");
  if (code !== 0) throw new Error(`npm run build failed (${code}):\n${out}`);
}

export interface DetachedTally {
  /** The process id, and the id of its own process group. */
  pid: number;
  child: ChildProcess;
  /** stdout and stderr so far (until the pipes are destroyed). */
  output: () => string;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** Resolves once the output matches `pattern`; rejects after `timeoutMs` or if the process exits first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Closes our ends of its stdout and stderr: the reader of its pipes is gone. */
  destroyPipes(): void;
  /** Polls `kill(-pid, 0)` until no process of its group is left: resolves with the ms that took, or undefined. */
  goneWithin(timeoutMs: number): Promise<number | undefined>;
  /** SIGKILLs whatever is left of its group (cleanup). */
  kill(): void;
}

/**
 * `node dist/src/main.js` (run `buildDist` first) in its own process group with piped stdout and stderr, as a
 * supervisor or a test harness runs it.
 */
export function spawnDetachedTally(env: Record<string, string>): DetachedTally {
  const child = spawn(process.execPath, ["dist/src/main.js"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error("spawn failed");
  let out = "";
  const append = (d: Buffer) => {
    out += d;
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  watchOutput(`Tally process ${pid}`, () => out);
  const exited = once(child, "exit").then(([code]) => code as number | null);
  const groupAlive = () => {
    try {
      process.kill(-pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  return {
    pid,
    child,
    output: () => out,
    exited,
    waitFor(pattern, timeoutMs = 60_000) {
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`no ${pattern} within ${timeoutMs} ms:\n${out}`)), timeoutMs);
        const check = () => {
          if (pattern.test(out)) done();
        };
        const done = (err?: Error) => {
          clearTimeout(timer);
          child.stdout?.off("data", check);
          child.stderr?.off("data", check);
          if (err) reject(err);
          else resolve();
        };
        child.stdout?.on("data", check);
        child.stderr?.on("data", check);
        void exited.then((code) => done(new Error(`exited with ${code} before ${pattern}:\n${out}`)));
        check();
      });
    },
    destroyPipes() {
      child.stdout?.destroy();
      child.stderr?.destroy();
    },
    async goneWithin(timeoutMs) {
      const started = Date.now();
      while (groupAlive()) {
        if (Date.now() - started > timeoutMs) return undefined;
        await new Promise((r) => setTimeout(r, 5));
      }
      return Date.now() - started;
    },
    kill() {
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        // already gone
      }
    },
  };
}

/**
 * An NDJSON body of `lines` events of `customer` (meter `calls`) written line by line over ~`ms` on a connection of
 * its own, so the request is still in flight when a signal comes; `written()` says how many lines went out.
 */
export function slowUpload(
  url: string,
  o: { key: string; customer: string; tag: string; lines: number; ms: number },
): { written: () => number; answer: Promise<{ status: number; body: string }> } {
  let written = 0;
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request(
      `${url}/v1/events`,
      {
        method: "POST",
        agent: false,
        headers: { Authorization: `Bearer ${o.key}`, "Content-Type": "application/x-ndjson" },
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    (async () => {
      for (let i = 0; i < o.lines; i++) {
        req.write(`${JSON.stringify({ id: `${o.tag}-${i}`, customer: o.customer, meter: "calls", value: 1 })}\n`);
        written += 1;
        await pace(o.ms / o.lines);
      }
      req.end();
    })().catch(reject);
  });
  return { written: () => written, answer };
}
