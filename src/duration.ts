// ISO 8601 durations for configuration ("PT1H", "P1DT12H", "PT90S", "P2W"), as milliseconds (pure). Years and
// months are refused: their length depends on the date they start from, and a configured wait must not.
const PATTERN = /^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:[.,]\d+)?)S)?)?$/;

/** Milliseconds of an ISO 8601 duration of weeks, days, hours, minutes and seconds; undefined if it is not one. */
export function parseIsoDuration(text: string): number | undefined {
  const m = PATTERN.exec(text.trim().toUpperCase());
  if (!m || text.trim().toUpperCase().endsWith("T") || m.slice(1).every((g) => g === undefined)) return undefined;
  const [weeks, days, hours, minutes] = m.slice(1, 5).map((g) => Number(g ?? 0)) as [number, number, number, number];
  const seconds = Number((m[5] ?? "0").replace(",", "."));
  const ms = Math.round((((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000);
  return Number.isSafeInteger(ms) ? ms : undefined;
}
