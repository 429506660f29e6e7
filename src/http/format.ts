// How values look in JSON: RFC 3339 UTC times without empty milliseconds ("2026-11-01T00:00:00Z").
export function isoTime(d: Date): string {
  const s = d.toISOString();
  return s.endsWith(".000Z") ? `${s.slice(0, -5)}Z` : s;
}
