// PostgreSQL COPY text format: tab-separated columns, \N for NULL, backslash escapes.
const SPECIAL = /[\\\t\n\r]/;

export function copyField(value: string | null): string {
  if (value === null) return "\\N";
  if (!SPECIAL.test(value)) return value;
  return value.replaceAll("\\", "\\\\").replaceAll("\t", "\\t").replaceAll("\n", "\\n").replaceAll("\r", "\\r");
}

export function copyRow(fields: readonly (string | null)[]): string {
  let line = "";
  for (let i = 0; i < fields.length; i++) line += (i === 0 ? "" : "\t") + copyField(fields[i] ?? null);
  return `${line}\n`;
}
