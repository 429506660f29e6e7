// The house rules, checked on every run: arrows point down (http → capabilities → db, by the layers below), no two
// folders import each other (directly or around a loop), nothing outside src/http knows Express (but the middleware
// other services install), the pure modules do no I/O, and files stay readable.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = join(import.meta.dirname, "..", "src");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** The module specifiers a file imports, relative ones resolved to paths under src/ ("http/problem.ts"). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/^(?:import|export)\s[^;]*?from\s+"([^"]+)"/gms)].map((m) => {
    const spec = m[1] as string;
    if (!spec.startsWith(".")) return spec;
    return relative(SRC, normalize(join(dirname(file), spec))).replace(/\.js$/, ".ts");
  });
}

const files = sourceFiles(SRC).map((f) => ({ path: relative(SRC, f), abs: f }));

/** The top-level unit of a path under src/: its folder ("credits"), or the file itself at the top ("clock.ts"). */
/** A file's unit: its folder under src/ (or the file itself at the top); the client packages beside src/ are one. */
const unitOf = (path: string): string => (path.startsWith("../clients/") ? "clients" : (path.split("/")[0] as string));

/** Imports between different units, each with the files that make it ("credits → limits": ["credits/a.ts → ..."]). */
function unitImports(): Map<string, Map<string, string[]>> {
  const edges = new Map<string, Map<string, string[]>>();
  for (const f of files) {
    for (const i of importsOf(f.abs).filter((i) => i.endsWith(".ts"))) {
      const [from, to] = [unitOf(f.path), unitOf(i)];
      if (from === to) continue;
      const out = edges.get(from) ?? new Map<string, string[]>();
      out.set(to, [...(out.get(to) ?? []), `${f.path} → ${i}`]);
      edges.set(from, out);
    }
  }
  return edges;
}

/**
 * The layers of src/, top first. A module imports from its own folder and from layers below its own, never from
 * its own layer's other members or from above. The order is what the code needs: the entry points start Tally; the
 * cluster's primary supervises workers that are Tallies; the composition root wires everything; http serves it; jobs schedule the capabilities' work; then the capabilities,
 * each above what it builds on (the dashboard, simulations and the Stripe sync read invoices, credits and limits;
 * limits evaluate statements, credits and forecasts; invoices carry credits; credits price statements and send
 * webhooks; billing prices rollups through pricing); the database seam and the leaf modules at the bottom.
 */
const LAYERS: readonly (readonly string[])[] = [
  ["main.ts", "index.ts"],
  ["cluster.ts"],
  ["tally.ts"],
  ["http"],
  ["jobs"],
  ["dashboard", "simulate", "stripe", "middleware"],
  ["limits"],
  ["invoices", "forecast"],
  ["credits"],
  ["billing", "ingest", "webhooks", "auth"],
  ["pricing"],
  ["dimensions"],
  ["rollups"],
  ["catalog", "changes", "periods"],
  ["config.ts"],
  ["db", "clock.ts", "errors.ts", "duration.ts", "logger.ts", "metrics.ts", "backoff.ts"],
  // The published client (clients/typescript) imports nothing of Tally's; tally/middleware re-exports its usageLimit.
  ["clients"],
];
const layerOf = new Map(LAYERS.flatMap((units, depth) => units.map((u) => [u, depth] as const)));

describe("architecture", () => {
  it("when a module outside src/http imports, then never from src/http (but the composition root, tally.ts)", () => {
    const offenders = files
      .filter((f) => !f.path.startsWith("http/") && f.path !== "tally.ts")
      .flatMap((f) =>
        importsOf(f.abs)
          .filter((i) => i.startsWith("http/"))
          .map((i) => `${f.path} → ${i}`),
      );
    expect(offenders).toEqual([]);
  });

  it("when a capability module imports, then never express (only src/http and the exported middleware do)", () => {
    const offenders = files
      .filter((f) => !f.path.startsWith("http/") && !f.path.startsWith("middleware/"))
      .flatMap((f) =>
        importsOf(f.abs)
          .filter((i) => i === "express")
          .map(() => f.path),
      );
    expect(offenders).toEqual([]);
  });

  it("when pricing is imported, then it brings no I/O with it (pure)", () => {
    const io =
      /^(pg|pg-copy-streams|express|stripe|node:fs|node:net|node:http|@unni-craftsman\/pglite)|^(db|http|ingest|rollups|billing|stripe|limits)\//;
    const offenders = files
      .filter((f) => f.path.startsWith("pricing/"))
      .flatMap((f) =>
        importsOf(f.abs)
          .filter((i) => io.test(i))
          .map((i) => `${f.path} → ${i}`),
      );
    expect(offenders).toEqual([]);
  });

  it("when the folders of src/ import each other, then never around a loop (A → B → … → A)", () => {
    const edges = unitImports();
    const reaches = (from: string, to: string, seen = new Set<string>()): boolean => {
      if (from === to) return true;
      if (seen.has(from)) return false;
      seen.add(from);
      return [...(edges.get(from)?.keys() ?? [])].some((next) => reaches(next, to, seen));
    };
    // An import a → b is in a loop exactly when b leads back to a.
    const inLoops = [...edges].flatMap(([from, out]) =>
      [...out].filter(([to]) => reaches(to, from)).map(([to, via]) => `${from} → ${to} (${via.join(", ")})`),
    );
    expect(inLoops).toEqual([]);
  });

  it("when a module imports another folder, then it lies in a lower layer (nothing imports upward or sideways)", () => {
    const units = [...new Set(files.map((f) => unitOf(f.path)))];
    expect(units.filter((u) => !layerOf.has(u))).toEqual([]); // a new folder takes its place in LAYERS
    const offenders = [...unitImports()].flatMap(([from, out]) =>
      [...out]
        .filter(([to]) => (layerOf.get(to) ?? -1) <= (layerOf.get(from) ?? -1))
        .map(([to, via]) => `${from} → ${to} (${via.join(", ")})`),
    );
    expect(offenders).toEqual([]);
  });

  it("when a source file is read, then it fits in one sitting (≤ 400 lines)", () => {
    const long = files
      .map((f) => ({ path: f.path, lines: readFileSync(f.abs, "utf8").split("\n").length }))
      .filter((f) => f.lines > 400);
    expect(long).toEqual([]);
  });
});
