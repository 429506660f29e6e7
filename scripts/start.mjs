// `npm start`: builds, then runs Tally (node dist/src/main.js) and hands each stop signal on to it exactly once.
// npm runs a script through `sh -c`, and a SIGTERM to npm (what a process manager sends) reaches only that shell,
// which dies and leaves Tally running without a graceful shutdown. So npm execs this file (no shell in between), and
// Tally runs in its own process group: a Ctrl-C in the terminal, which signals the whole foreground group, reaches
// Tally only through here, not also directly (twice would mean "stop now" to it: see src/main.ts).
import { spawn } from "node:child_process";
import { constants } from "node:os";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** A repeat of the same signal within this time is the same request (npm forwards what the terminal also sent). */
const SAME_REQUEST_MS = 500;
const FORWARDED = ["SIGTERM", "SIGINT", "SIGHUP"];

/** Runs a child, passing our signals on to it (SIGHUP as SIGTERM: the terminal went away); resolves its exit. */
function run(command, args, opts) {
  const child = spawn(command, args, { cwd: ROOT, stdio: "inherit", ...opts });
  const last = new Map();
  const forward = (signal) => {
    const now = Date.now();
    if (now - (last.get(signal) ?? Number.NEGATIVE_INFINITY) < SAME_REQUEST_MS) return;
    last.set(signal, now);
    if (child.exitCode === null && child.signalCode === null) child.kill(signal === "SIGHUP" ? "SIGTERM" : signal);
  };
  for (const signal of FORWARDED) process.on(signal, forward);
  // Should this process fail, Tally is not left behind.
  const orphaned = () => child.kill("SIGTERM");
  process.on("exit", orphaned);
  return new Promise((resolve) => {
    child.on("error", (err) => {
      process.stderr.write(`tally: cannot run ${command}: ${err.message}\n`);
      resolve(1);
    });
    child.on("exit", (code, signal) => {
      for (const s of FORWARDED) process.off(s, forward);
      process.off("exit", orphaned);
      resolve(code ?? 128 + (constants.signals[signal] ?? 0));
    });
  });
}

// A signal during the build stops it, and Tally is not started after it.
let stopping = false;
for (const signal of FORWARDED) process.once(signal, () => (stopping = true));
// Under npm, npm_execpath is npm's own script: the build runs with the same npm and node.
const npm = process.env.npm_execpath;
const built = await (npm
  ? run(process.execPath, [npm, "run", "build"], {})
  : run("npm", ["run", "build"], { shell: process.platform === "win32" }));
if (built !== 0 || stopping) process.exit(built || 1);
process.exit(await run(process.execPath, ["dist/src/main.js"], { detached: process.platform !== "win32" }));
