// The one hash of bearer secrets (API keys, portal tokens): SHA-256, so only digests are ever stored.
import { createHash } from "node:crypto";

export function hashKey(key: string): Buffer {
  return createHash("sha256").update(key, "utf8").digest();
}
