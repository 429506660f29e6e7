// The pure rules of limits, as tables: every threshold is tried just below, at and just above, and every condition
// of a holding block on both of its sides, so that turning any comparison in src/limits/rules.ts around (≥ to >,
// ≤ to <, === to !==, a null check the other way) fails a row.
import { describe, expect, it } from "vitest";
import { evaluate, isNear, type Limit, type LimitState, type LimitUnit, limitProblem } from "../src/limits/rules.js";
import { dec } from "../src/pricing/money.js";

const limit = (soft: string | null, hard: string | null, unit: LimitUnit = "quantity"): Limit => ({
  soft: soft === null ? null : dec(soft),
  hard: hard === null ? null : dec(hard),
  unit,
});
const previous = (state: LimitState, blockedAtHard: string | null, unit: LimitUnit | null = "quantity") => ({
  state,
  blockedAtHard: blockedAtHard === null ? null : dec(blockedAtHard),
  unit,
});
/** What evaluate returns, with decimals as strings. */
const plain = (e: ReturnType<typeof evaluate>) => ({
  state: e.state,
  blockedAtHard: e.blockedAtHard?.toString() ?? null,
  reached: e.reached.map((r) => `${r.level}@${r.threshold.toString()}`),
});

describe("evaluate: thresholds, without an earlier state", () => {
  it.each([
    // value, soft, hard, state, blockedAtHard, reached
    ["5", null, null, "ok", null, []],
    ["79.999", "80", "100", "ok", null, []],
    ["80", "80", "100", "soft", null, ["soft@80"]],
    ["80.001", "80", "100", "soft", null, ["soft@80"]],
    ["99.999", "80", "100", "soft", null, ["soft@80"]],
    ["100", "80", "100", "blocked", "100", ["soft@80", "hard@100"]],
    ["100.5", "80", "100", "blocked", "100", ["soft@80", "hard@100"]],
    ["1000", "80", null, "soft", null, ["soft@80"]],
    ["79", "80", null, "ok", null, []],
    ["99.999", null, "100", "ok", null, []],
    ["100", null, "100", "blocked", "100", ["hard@100"]],
    ["0", "0", null, "soft", null, ["soft@0"]],
    ["-1", "0", "0", "ok", null, []],
  ] as const)("when the value is %s with soft %s and hard %s, then %s", (value, soft, hard, state, at, reached) => {
    expect(plain(evaluate(dec(value), limit(soft, hard), undefined))).toEqual({ state, blockedAtHard: at, reached });
  });

  it("when there is no limit, then ok whatever the value and the earlier state", () => {
    expect(plain(evaluate(dec("1e9"), undefined, previous("blocked", "100")))).toEqual({
      state: "ok",
      blockedAtHard: null,
      reached: [],
    });
  });
});

describe("evaluate: a block reached earlier in the period", () => {
  it.each([
    // what happened, value, limit now, earlier state, state, blockedAtHard
    ["the value fell, the limit is unchanged", "50", limit(null, "100"), previous("blocked", "100"), "blocked", "100"],
    ["the limit was lowered", "50", limit(null, "90"), previous("blocked", "100"), "blocked", "100"],
    ["the limit was raised just above", "50", limit(null, "100.01"), previous("blocked", "100"), "ok", null],
    ["the limit was raised, a soft one stays", "50", limit("40", "150"), previous("blocked", "100"), "soft", null],
    ["the hard limit was removed", "50", limit("10", null), previous("blocked", "100"), "soft", null],
    ["the unit changed", "50", limit(null, "100", "amount"), previous("blocked", "100", "quantity"), "ok", null],
    ["the earlier state was soft", "50", limit(null, "100"), previous("soft", "100"), "ok", null],
    ["the earlier state was ok", "50", limit(null, "100"), previous("ok", "100"), "ok", null],
    ["no block value was kept", "50", limit(null, "100"), previous("blocked", null), "ok", null],
    ["no unit was kept", "50", limit(null, "100"), previous("blocked", "100", null), "ok", null],
    ["the value reaches the lowered limit", "95", limit(null, "90"), previous("blocked", "100"), "blocked", "90"],
  ] as const)("when %s, then %s", (_what, value, lim, prev, state, at) => {
    expect(plain(evaluate(dec(value), lim, prev))).toMatchObject({ state, blockedAtHard: at });
  });

  it("when a block holds, then only the thresholds the value reaches now are reported", () => {
    expect(plain(evaluate(dec("50"), limit("40", "90"), previous("blocked", "100")))).toEqual({
      state: "blocked",
      blockedAtHard: "100",
      reached: ["soft@40"],
    });
  });
});

describe("isNear: within 10% below a threshold", () => {
  it.each([
    // estimate, soft, hard, near
    ["71.99", "80", "100", false],
    ["72", "80", "100", true],
    ["72.01", "80", "100", true],
    ["500", "80", "100", true],
    ["89.99", null, "100", false],
    ["90", null, "100", true],
    ["71.99", "80", null, false],
    ["72", "80", null, true],
    ["1000", null, null, false],
  ] as const)("when the estimate is %s with soft %s and hard %s, then %s", (estimate, soft, hard, near) => {
    expect(isNear(dec(estimate), limit(soft, hard))).toBe(near);
  });
});

describe("limitProblem", () => {
  const d = (v: string | null) => (v === null ? null : dec(v));
  it.each([
    [null, null, "limit_empty"],
    ["10", "5", "soft_above_hard"],
    // 18 digits: Number() would make these equal and let soft > hard through.
    ["999999999999999999", "999999999999999998", "soft_above_hard"],
    ["5", "5", undefined],
    ["5", "10", undefined],
    [null, "10", undefined],
    ["10", null, undefined],
    ["999999999999999998", "999999999999999999", undefined],
  ])("when soft is %s and hard %s, then the problem is %s", (soft, hard, code) => {
    expect(limitProblem(d(soft), d(hard))?.code).toBe(code);
  });
});
