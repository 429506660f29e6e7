// The dashboard's pages: /dashboard (operator) and /embed/customer (one customer, for an iframe), one built page
// (web/, bundled by Vite at npm run build into dist/web) whose script picks the view from the path. No auth to load
// them — their data calls carry the key or token. Hashed assets are cached for a year; the HTML is revalidated.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import express, { type Response, type Router } from "express";
import { sendProblem } from "./problem.js";
import { EXACT_PATHS } from "./routeTable.js";

/** dist/web under the package root, found from this file in src/http or dist/src/http. */
function webDirectory(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) return join(process.cwd(), "dist", "web");
    dir = parent;
  }
  return join(dir, "dist", "web");
}

const BASE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  // No inline styles: uPlot and the page set sizes through element.style, which CSP does not restrict.
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
];

interface PageOptions {
  /** Origins allowed to frame /embed/customer (TALLY_EMBED_ORIGINS); empty: none. */
  embedOrigins: string[];
  /** The built page (default: dist/web of this package; tests build their own copy). */
  directory?: string | undefined;
}

export function dashboardPages(opts: PageOptions): Router {
  const dir = opts.directory ?? webDirectory();
  const router = express.Router(EXACT_PATHS);
  const embedAncestors = opts.embedOrigins.length ? opts.embedOrigins.join(" ") : "'none'";

  const page = async (res: Response, frameAncestors: string, cache: string) => {
    let html: string;
    try {
      html = await readFile(join(dir, "index.html"), "utf8");
    } catch {
      sendProblem(res, 503, "dashboard_not_built", "the dashboard is not built: run npm run build (npm start does)");
      return;
    }
    res.setHeader("Content-Security-Policy", [...BASE_CSP, `frame-ancestors ${frameAncestors}`].join("; "));
    // X-Frame-Options cannot list origins: DENY when nobody may frame the page, else left to frame-ancestors.
    if (frameAncestors === "'none'") res.setHeader("X-Frame-Options", "DENY");
    else res.removeHeader("X-Frame-Options");
    res.setHeader("Cache-Control", cache);
    res.type("html").send(html);
  };

  router.get(["/dashboard", "/dashboard/"], async (_req, res) => {
    res.locals.route = "/dashboard";
    await page(res, "'none'", "no-cache");
  });
  // The URL carries a token: never stored by caches (and helmet's Referrer-Policy: no-referrer keeps it from others).
  router.get("/embed/customer", async (_req, res) => {
    res.locals.route = "/embed/customer";
    await page(res, embedAncestors, "no-store");
  });
  router.use(
    "/dashboard/assets",
    (_req, res, next) => {
      res.locals.route = "/dashboard/assets";
      next();
    },
    express.static(join(dir, "assets"), { immutable: true, maxAge: "365d", index: false, fallthrough: true }),
  );
  return router;
}
