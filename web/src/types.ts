// The shapes of the API answers the pages read (docs/api.md); money and quantities are decimal strings.
export type State = "ok" | "soft" | "blocked" | "credits_exhausted";

export interface OverviewCustomer {
  id: string;
  name: string | null;
  plan: string | null;
  currency: string | null;
  spend: string;
  previous_spend: string;
  forecast: string;
  growth: string;
  growth_ratio: string | null;
  run_rate_per_day: string;
  state: State;
  soft_meters: string[];
  blocked_meters: string[];
}

export interface Overview {
  /** Set when the key (or portal token) is bound to one customer. */
  bound_customer: string | null;
  period: { start: string; end: string };
  customers: OverviewCustomer[];
  totals: { currency: string; customers: number; spend: string; previous_spend: string; forecast: string }[];
  states: Record<State, number>;
  as_of: string;
}

export interface ViewMeter {
  key: string;
  name: string;
  unit: string;
  aggregation: string;
  dimensions: string[];
}

export interface CustomerInfo {
  customer: { id: string; name: string | null };
  plan: { key: string; currency: string; since: string } | null;
  period: { start: string; end: string };
  meters: ViewMeter[];
  as_of: string;
}

export interface SummaryMeter {
  meter: string;
  quantity: string;
  amount: string;
  tier?: { index: number; up_to: string | null; unit_price: string; units_to_next_tier: string | null };
  limit?: { soft: string | null; hard: string | null; unit: "quantity" | "amount"; state: "ok" | "soft" | "blocked" };
  groups?: { dimensions: Record<string, string | null>; quantity: string; amount: string }[];
}

export interface Summary {
  customer: string;
  period: { start: string; end: string };
  currency: string | null;
  meters: SummaryMeter[];
  subtotal?: string;
  credits?: string;
  total: string;
  as_of: string;
}

export interface InvoiceLine {
  meter: string | null;
  description: string;
  quantity?: string;
  amount: string;
  adjusts?: string;
  grant?: string;
  dimensions?: Record<string, string | null>;
}

export interface Invoice {
  id: string;
  number: string | null;
  status: "draft" | "final";
  customer: string;
  period: { start: string; end: string };
  currency: string | null;
  lines: InvoiceLine[];
  subtotal?: string;
  credits?: string;
  adjustments?: string;
  total: string;
  finalized_at: string | null;
}

export interface Forecast {
  period: { start: string; end: string };
  method: string;
  currency: string | null;
  meters: {
    meter: string;
    quantity_to_date: string;
    forecast_quantity: string;
    amount_to_date: string;
    forecast_amount: string;
  }[];
  total_to_date: string;
  forecast_total: string;
  as_of: string;
}

export interface Credits {
  currency: string | null;
  balance: string;
  grants: {
    id: string;
    amount: string;
    remaining: string;
    expires_at: string | null;
    description: string | null;
    voided_at: string | null;
  }[];
  as_of: string;
}

export interface UsageRow {
  start: string;
  end: string;
  value: string;
  count: number;
  dimensions?: Record<string, string | null>;
}

export interface Alert {
  customer: string;
  meter: string;
  level: string;
  threshold: string;
  value: string;
  period: string;
  triggered_at: string;
}
