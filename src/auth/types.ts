// Who is calling: the scopes of the API key and the customer it is bound to, if any.
export const SCOPES = ["admin", "ingest", "read"] as const;
export type Scope = (typeof SCOPES)[number];

export interface Auth {
  keyId: string;
  scopes: Scope[];
  /** A bound key sees only this customer. */
  customer: string | null;
  /** Portal tokens only: the instant from which the token is refused (401). */
  expiresAt?: Date;
}
