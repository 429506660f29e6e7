// Time-ordered event ids (UUIDv7, RFC 9562): 48 bits of Unix milliseconds, then a 12-bit counter that keeps ids
// made in the same millisecond in order (method 1 of §6.2), then 62 random bits. Ordered ids land at the right edge
// of Tally's key index (docs/ingest.md, "Production settings"); the Python client makes them the same way.
import { randomBytes } from "node:crypto";

const POOL_SIZE = 4096;
let pool = randomBytes(POOL_SIZE);
let poolAt = 0;
let lastMs = -1;
let counter = 0;

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** `n` random bytes from a pool refilled 4 KiB at a time (one system call per ~400 ids, not one per id). */
function take(n: number): Buffer {
  if (poolAt + n > POOL_SIZE) {
    pool = randomBytes(POOL_SIZE);
    poolAt = 0;
  }
  const out = pool.subarray(poolAt, poolAt + n);
  poolAt += n;
  return out;
}

/** A UUIDv7 string; ids made by one process are strictly increasing (also when the clock steps back). */
export function uuid7(now = Date.now()): string {
  const r = take(10);
  if (now > lastMs) {
    lastMs = now;
    // A random start below 2^11 leaves at least 2,048 ids for this millisecond before the counter runs out.
    counter = ((r[0] as number) << 3) | ((r[1] as number) & 0x07);
  } else {
    counter += 1;
    if (counter > 0xfff) {
      // More than the counter holds in one millisecond (or the clock went back): borrow the next millisecond.
      lastMs += 1;
      counter = 0;
    }
  }
  const ms = lastMs;
  const b = new Array<number>(16);
  const high = Math.floor(ms / 2 ** 16);
  b[0] = (high >>> 24) & 0xff;
  b[1] = (high >>> 16) & 0xff;
  b[2] = (high >>> 8) & 0xff;
  b[3] = high & 0xff;
  b[4] = (ms >>> 8) & 0xff;
  b[5] = ms & 0xff;
  b[6] = 0x70 | (counter >>> 8);
  b[7] = counter & 0xff;
  b[8] = 0x80 | ((r[2] as number) & 0x3f);
  for (let i = 9; i < 16; i++) b[i] = r[i - 6] as number;
  const h = b.map((x) => HEX[x]);
  return `${h.slice(0, 4).join("")}-${h.slice(4, 6).join("")}-${h.slice(6, 8).join("")}-${h.slice(8, 10).join("")}-${h.slice(10).join("")}`;
}
