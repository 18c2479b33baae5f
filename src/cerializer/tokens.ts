/**
 * Bearer tokens: POST /v1/auth/token trades Basic credentials for a token,
 * so a client need not send (or keep) the password on every request.
 *
 * A token is 32 random bytes (base64url), opaque: it means something only
 * to the gateway process that issued it, which maps it to the credentials
 * it was issued for, until it expires (--token-ttl-seconds) or is revoked
 * (DELETE /v1/auth/token). Each use goes through callers.ts like Basic
 * credentials, so a password changed on the node ends its tokens too
 * (within CALLER_REVERIFY_MS). Tokens are kept in memory only: a restarted
 * gateway forgets them, and several gateways behind a load balancer do not
 * share them (docs/decisions/0263 says why not JWTs).
 *
 * The table is keyed by a hash of the token, not the token, and bounded:
 * at most `maxTokens`; when full, expired ones are swept, and if none
 * expired the request is refused (503 too-many-tokens) rather than an
 * unexpired token dropped under its holder.
 */
import { createHash, randomBytes } from "node:crypto";
import { Problem, RETRY_AFTER_SECONDS } from "./problems.js";

export const CERIALIZER_MAX_TOKENS = 10_000;
export const DEFAULT_TOKEN_TTL_SECONDS = 3_600;
const TOKEN_BYTES = 32;

interface Grant {
  user: string;
  password: string;
  expiresAtMs: number;
}

export class Tokens {
  private readonly grants = new Map<string, Grant>();

  constructor(
    private readonly ttlSeconds: number,
    private readonly maxTokens = CERIALIZER_MAX_TOKENS,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.grants.size;
  }

  issue(user: string, password: string): { token: string; expiresInSeconds: number } {
    if (this.grants.size >= this.maxTokens) this.sweep();
    if (this.grants.size >= this.maxTokens)
      throw new Problem(
        "too-many-tokens",
        `${this.grants.size} tokens are live (limit ${this.maxTokens}); revoke unused ones or retry later`,
        { limit: this.maxTokens },
        { "retry-after": String(RETRY_AFTER_SECONDS) },
      );
    const token = randomBytes(TOKEN_BYTES).toString("base64url");
    this.grants.set(digest(token), { user, password, expiresAtMs: this.now() + this.ttlSeconds * 1000 });
    return { token, expiresInSeconds: this.ttlSeconds };
  }

  /** The credentials `token` stands for, or null: unknown, revoked or expired. */
  lookup(token: string): { user: string; password: string } | null {
    const key = digest(token);
    const g = this.grants.get(key);
    if (g === undefined) return null;
    if (this.now() >= g.expiresAtMs) {
      this.grants.delete(key);
      return null;
    }
    return g;
  }

  /** Whether `token` was live (it is not any more). */
  revoke(token: string): boolean {
    return this.grants.delete(digest(token));
  }

  private sweep(): void {
    const now = this.now();
    for (const [k, g] of this.grants) if (now >= g.expiresAtMs) this.grants.delete(k);
  }
}

function digest(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}
