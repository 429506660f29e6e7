// The headers helmet sets on every response, captured once for answers written outside Express (the entitlement
// fast path, malformed HTTP refused by Node's parser), so they carry exactly the same.
import helmet from "helmet";

export function securityHeaders(): [string, string][] {
  const headers: [string, string][] = [];
  const res = {
    setHeader: (name: string, value: unknown) => headers.push([name, String(value)]),
    removeHeader: () => {},
    getHeader: () => undefined,
  };
  helmet()({} as never, res as never, () => {});
  return headers;
}
