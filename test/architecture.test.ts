// The house rules, checked on every run: arrows point down (http → capabilities → db), nothing outside src/http
// knows Express (but the middleware other services install), the pure modules do no I/O, and files stay readable.
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

  it("when a source file is read, then it fits in one sitting (≤ 400 lines)", () => {
    const long = files
      .map((f) => ({ path: f.path, lines: readFileSync(f.abs, "utf8").split("\n").length }))
      .filter((f) => f.lines > 400);
    expect(long).toEqual([]);
  });
});
