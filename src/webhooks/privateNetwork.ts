// Addresses off the public internet (loopback, private, link-local, …): webhook endpoints may not point at them unless
// TALLY_WEBHOOK_ALLOW_PRIVATE=true, or whoever may register an endpoint could make Tally call services next to it
// (a cloud metadata service at 169.254.169.254, an admin port on 127.0.0.1).
import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";

const PRIVATE = new BlockList();
for (const [net, bits] of [
  ["0.0.0.0", 8], // "this network"
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // carrier-grade NAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local, cloud metadata services
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15], // benchmarking
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast
] as const) {
  PRIVATE.addSubnet(net, bits, "ipv4");
}
for (const [net, bits] of [
  ["::", 96], // unspecified, loopback, IPv4-compatible (deprecated)
  ["fc00::", 7], // unique local
  ["fe80::", 10], // link-local
  ["fec0::", 10], // site-local (deprecated)
  ["ff00::", 8], // multicast
] as const) {
  PRIVATE.addSubnet(net, bits, "ipv6");
}

/** An IPv4 address embedded in an IPv6 one that a gateway would turn into it: NAT64 (64:ff9b::/96) or 6to4 (2002::/16). */
function embeddedIpv4(ip: string): string | undefined {
  const groups = expandIpv6(ip);
  if (!groups) return undefined;
  const quad = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  if (groups[0] === 0x64 && groups[1] === 0xff9b && groups.slice(2, 6).every((g) => g === 0)) {
    return quad(groups[6] as number, groups[7] as number);
  }
  if (groups[0] === 0x2002) return quad(groups[1] as number, groups[2] as number);
  return undefined;
}

function expandIpv6(ip: string): number[] | undefined {
  if (ip.includes(".")) return undefined; // a dotted tail is only used for ::ffff:a.b.c.d, which BlockList checks
  const [head = "", tail] = ip.split("::");
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((g) => Number.parseInt(g, 16)));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  const groups = [...left, ...Array(8 - left.length - right.length).fill(0), ...right];
  return groups.length === 8 && groups.every((g) => Number.isInteger(g)) ? groups : undefined;
}

/** Is this IP address (v4, or v6 including IPv4-mapped ones) off the public internet? */
export function isPrivateAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 4) return PRIVATE.check(ip, "ipv4");
  if (family !== 6) return false;
  if (PRIVATE.check(ip, "ipv6")) return true;
  const v4 = embeddedIpv4(ip);
  return v4 !== undefined && PRIVATE.check(v4, "ipv4");
}

const DNS_TIMEOUT_MS = 3_000;

/**
 * Why an http(s) URL must not be called when private addresses are not allowed, or undefined when it may be: its host
 * is localhost, a private IP literal, or a name that resolves to a private address (every address it has is checked).
 * A name that does not resolve (in DNS_TIMEOUT_MS) is allowed with `unresolved: "allow"` (registration: it may exist
 * later) and refused with "refuse" (delivery: the request would not get anywhere). `resolve`: DNS (tests replace it).
 */
export async function privateTarget(
  url: string,
  opts: { unresolved: "allow" | "refuse"; resolve?: (host: string) => Promise<{ address: string }[]> },
): Promise<string | undefined> {
  const resolve = opts.resolve ?? ((name: string) => lookup(name, { all: true, verbatim: true }));
  const host = new URL(url).hostname.replace(/^\[(.*)\]$/, "$1").replace(/\.$/, "");
  if (host === "localhost" || host.endsWith(".localhost")) return `${host} is this machine`;
  if (isIP(host)) return isPrivateAddress(host) ? `${host} is not a public address` : undefined;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${DNS_TIMEOUT_MS} ms`)), DNS_TIMEOUT_MS);
    timer.unref();
  });
  try {
    const addresses = await Promise.race([resolve(host), timeout]);
    const found = addresses.find((a) => isPrivateAddress(a.address));
    return found ? `${host} resolves to ${found.address}, which is not a public address` : undefined;
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    return opts.unresolved === "refuse" ? `${host} did not resolve (${why})` : undefined;
  } finally {
    clearTimeout(timer);
  }
}
