// A real headless Chromium for the dashboard tests and benchmark: the binary shipped inside the npm package
// @sparticuz/chromium (nothing downloaded at install or run time), driven by puppeteer-core; Debian's
// /usr/bin/chromium only if that one cannot start. The dashboard's assets are built by Vite first.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import chromium from "@sparticuz/chromium";
import puppeteer, { type Browser } from "puppeteer-core";
import { build } from "vite";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const ARTIFACTS = join(ROOT, "test-artifacts");

const ARGS = [
  "--no-sandbox",
  "--headless",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--no-default-browser-check",
  // With LANG=C Chromium reports navigator.language "en-US@posix", which Intl (uPlot's number format) rejects.
  "--lang=en-US",
];

let built: Promise<string> | undefined;

/**
 * Builds web/ as npm run build does, once per test file, into a directory of its own (removed at exit): another test
 * file's `npm run build` may empty dist/web at any moment. Start Tally with `webDirectory` set to the answer.
 */
export function buildDashboard(): Promise<string> {
  built ??= (async () => {
    const outDir = mkdtempSync(join(tmpdir(), "tally-web-"));
    process.once("exit", () => rmSync(outDir, { recursive: true, force: true }));
    await build({
      configFile: join(ROOT, "web", "vite.config.ts"),
      logLevel: "warn",
      build: { outDir, emptyOutDir: true },
    });
    return outDir;
  })();
  return built;
}

export async function launchBrowser(): Promise<Browser> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const options = {
    headless: true,
    args: ARGS,
    defaultViewport: { width: 1280, height: 900 },
    env: { ...process.env, LANG: "en_US.UTF-8", LC_ALL: "en_US.UTF-8" },
  } as const;
  try {
    return await puppeteer.launch({ ...options, executablePath: await chromium.executablePath() });
  } catch (err) {
    if (!existsSync("/usr/bin/chromium")) throw err;
    return puppeteer.launch({ ...options, executablePath: "/usr/bin/chromium" });
  }
}
