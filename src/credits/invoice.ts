// Credits on an invoice or summary: one negative line per grant that paid part of the period's usage charges,
// their sum, and total = subtotal − credits (never below zero; credits pay usage, never base fees).
import { buildStatement, type Statement } from "../billing/statement.js";
import type { Queryable } from "../db/types.js";
import { type Dec, sum, ZERO } from "../pricing/money.js";
import type { Period } from "../pricing/segments.js";
import { type CreditLedger, type CreditLedgers, creditsOf } from "./ledger.js";

export interface CreditLine {
  grant: string;
  description: string;
  /** Negative. */
  amount: Dec;
}

export interface StatementCredits {
  subtotal: Dec;
  lines: CreditLine[];
  credits: Dec;
  total: Dec;
  /**
   * The ledger's usage charges for the period equal the statement's usage lines (both read in one snapshot, priced
   * by the same code). False would be a bug; it is logged, never hidden.
   */
  consistent: boolean;
}

function statementCredits(ledger: CreditLedger, st: Statement): StatementCredits {
  const subtotal = st.invoice.total;
  const currency = st.currency;
  const applied = creditsOf(ledger, st.period).filter((c) => c.grant.currency === currency);
  const lines = applied.map((c) => ({
    grant: c.grant.id,
    description: `Prepaid credits${c.grant.description ? `: ${c.grant.description}` : ""} (grant ${c.grant.id})`,
    amount: c.amount.negated(),
  }));
  const credits = sum(applied.map((c) => c.amount));
  const usage = sum(st.invoice.lines.filter((l) => l.kind === "usage").map((l) => l.amount));
  const charged = ledger.periods.get(st.period.start.getTime());
  const ledgerUsage = charged ? sum(charged.totals.values()) : ZERO;
  const total = subtotal.minus(credits);
  return {
    subtotal,
    lines,
    credits,
    total: total.isNegative() ? ZERO : total,
    consistent: !charged || ledgerUsage.eq(usage),
  };
}

/** A statement and the credits that pay it. `credits` is undefined for a customer without grants. */
export interface CreditedStatement {
  statement: Statement;
  credits: StatementCredits | undefined;
}

/**
 * The customer's statement of a period with its credits: read in one snapshot through the ledgers, or within the
 * caller's transaction `tx` (finalization holds the invoice's lock).
 */
export async function creditedStatement(
  ledgers: CreditLedgers,
  customer: string,
  period: Period,
  now: Date,
  tx?: Queryable,
): Promise<CreditedStatement> {
  if (tx) {
    const ledger = await ledgers.ledgerIn(tx, customer, now);
    const statement = await buildStatement(tx, customer, period, now);
    return { statement, credits: ledger ? statementCredits(ledger, statement) : undefined };
  }
  const { ledger, value: statement } = await ledgers.read(customer, now, (q) =>
    buildStatement(q, customer, period, now),
  );
  return { statement, credits: ledger ? statementCredits(ledger, statement) : undefined };
}
