/**
 * What an HTTP caller says about who it is: the Authorization header, read
 * strictly. Pure: no IO, no state; callers.ts decides whether the node
 * accepts what this reads.
 *
 *   (none)                          anonymous: the node's default user
 *   Basic base64(user:password)     RFC 7617; an empty user is "default"
 *   Bearer <token>                  RFC 6750; a token from POST /v1/auth/token
 *
 * Anything else (another scheme, bad base64, no colon) is refused as
 * malformed rather than ignored: a caller who meant to authenticate must
 * never be served as someone else, anonymous included.
 */
import { createHmac, randomBytes } from "node:crypto";

export type Credentials =
  | { kind: "none" }
  | { kind: "basic"; user: string; password: string }
  | { kind: "bearer"; token: string }
  | { kind: "malformed"; why: string };

/** A user name or token longer than this is not one (the header is bounded anyway, by maxHeaderSize). */
export const MAX_CREDENTIAL_CHARS = 4096;

/** The challenge sent with a 401 (RFC 7235): Basic, which POST /v1/auth/token takes too. */
export const BASIC_CHALLENGE = 'Basic realm="piccolo"';
/** The challenge for a bearer token the gateway does not know (or no longer: expired, revoked). */
export const BEARER_CHALLENGE = 'Bearer realm="piccolo", error="invalid_token"';
/**
 * The challenge for a script's request (X-Requested-With: XMLHttpRequest, as the web console sends):
 * Bearer, which no browser answers with a login dialog of its own, where Basic would put one over the page.
 */
export const SCRIPT_CHALLENGE = 'Bearer realm="piccolo"';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

export function parseAuthorization(header: string | undefined): Credentials {
  if (header === undefined) return { kind: "none" };
  if (header.length > 2 * MAX_CREDENTIAL_CHARS)
    return { kind: "malformed", why: "the Authorization header is too long" };
  const space = header.indexOf(" ");
  const scheme = (space < 0 ? header : header.slice(0, space)).toLowerCase();
  const rest = space < 0 ? "" : header.slice(space + 1).trim();
  if (scheme === "basic") {
    if (rest === "" || rest.length % 4 !== 0 || !BASE64.test(rest))
      return { kind: "malformed", why: "Basic credentials must be base64(user:password)" };
    const text = Buffer.from(rest, "base64").toString("utf8");
    const colon = text.indexOf(":");
    if (colon < 0) return { kind: "malformed", why: "Basic credentials must be base64(user:password): no colon" };
    const user = text.slice(0, colon);
    return { kind: "basic", user: user === "" ? "default" : user, password: text.slice(colon + 1) };
  }
  if (scheme === "bearer") {
    if (rest === "" || rest.length > MAX_CREDENTIAL_CHARS || !TOKEN.test(rest))
      return { kind: "malformed", why: "a Bearer token is one token68 (RFC 6750), from POST /v1/auth/token" };
    return { kind: "bearer", token: rest };
  }
  return { kind: "malformed", why: `the Authorization scheme must be Basic or Bearer, got "${scheme.slice(0, 20)}"` };
}

/**
 * Credentials as a cache key: the user and a keyed hash of the password.
 * The key is random per process, so the cache holds nothing a password could
 * be recovered from offline, and nothing comparable across gateways; the
 * password itself never appears in a key, a log line or a metric.
 */
export class CredentialKeys {
  private readonly secret = randomBytes(32);

  of(user: string, password: string): string {
    const mac = createHmac("sha256", this.secret).update(password, "utf8").digest("base64url");
    return `${user}\u0000${mac}`;
  }
}
