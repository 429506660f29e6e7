// One scenario on both engines, one after the other: what each recorded must be identical (an engine-specific
// answer is a bug of one of them), and a failure names the engine it happened on.
import { expect } from "vitest";
import type { TestBackend } from "./databases.js";

/** Records a value under a name; answers the value, so it can wrap an expression. */
type Recorder = (name: string, value: unknown) => unknown;

/**
 * A runner of scenarios over `engines` (filled in later, by a beforeAll). `omit`: top-level fields of a recorded
 * object that may differ between runs (as_of, the instant of the answer).
 */
export function bothEngines<H extends { backend: TestBackend }>(
  engines: readonly H[],
  opts: { omit?: readonly string[] } = {},
): (scenario: (e: H & { record: Recorder }) => Promise<void>) => Promise<void> {
  const omit = new Set(opts.omit ?? []);
  const comparable = (value: unknown) =>
    omit.size > 0 && value !== null && typeof value === "object" && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value).filter(([k]) => !omit.has(k)))
      : value;
  return async (scenario) => {
    expect(engines.map((e) => e.backend).sort(), "both engines started").toEqual(["embedded", "postgres"]);
    const seen: Partial<Record<TestBackend, Record<string, unknown>>> = {};
    for (const h of engines) {
      const mine: Record<string, unknown> = {};
      seen[h.backend] = mine;
      const record = (name: string, value: unknown) => {
        mine[name] = comparable(value);
        return value;
      };
      try {
        await scenario({ ...h, record });
      } catch (err) {
        if (err instanceof Error) err.message = `on ${h.backend}: ${err.message}`;
        throw err;
      }
    }
    expect(seen.postgres, "the same answers on both engines").toEqual(seen.embedded);
  };
}
