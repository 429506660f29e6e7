// Proleptic Gregorian calendar arithmetic on "wall" milliseconds (pure): a local date and time written as if it
// were UTC, so that calendar fields come from integer arithmetic instead of Date objects or Intl.

export const SECOND = 1000;
export const HOUR = 3_600_000;
export const DAY = 86_400_000;

export interface CivilDate {
  year: number;
  /** 1..12 */
  month: number;
  /** 1..31 */
  day: number;
}

/** Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil; exact for every year, no 0–99 quirk). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * ((month + 9) % 12) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** The civil date of a day number (the inverse of daysFromCivil). */
export function civilFromDays(days: number): CivilDate {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return { year: yoe + era * 400 + (month <= 2 ? 1 : 0), month, day };
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/** Wall milliseconds of a civil date and a time of day. */
export function wallOf(year: number, month: number, day: number, timeOfDay = 0): number {
  return daysFromCivil(year, month, day) * DAY + timeOfDay;
}

/** A month counted from year 0 (`year * 12 + month - 1`), the unit month and year cycles step in. */
export function monthNumber(d: CivilDate): number {
  return d.year * 12 + d.month - 1;
}

/**
 * The wall time `months` months after a date, keeping its day of month clamped to the target month's last day:
 * computed from the given date directly, so Jan 31 + 1 is Feb 28/29 and Jan 31 + 2 is Mar 31 (never drifting).
 */
export function addMonths(d: CivilDate, timeOfDay: number, months: number): number {
  const n = monthNumber(d) + months;
  const year = Math.floor(n / 12);
  const month = n - year * 12 + 1;
  return wallOf(year, month, Math.min(d.day, daysInMonth(year, month)), timeOfDay);
}
