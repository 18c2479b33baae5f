/**
 * Who sent a request: the step every request passes before its route
 * (server.ts runs it in an onRequest hook), turning the Authorization
 * header into the Caller its node requests are sent as (pool.ts).
 *
 *   no header       "anonymous" (refused by protected mode from another
 *                   machine when the gateway listens on a public address)
 *   Basic           the credentials, checked by the node (callers.ts)
 *   Bearer          the credentials the token was issued for (tokens.ts)
 *   anything else   401
 *
 * Every refusal is 401 problem+json with a WWW-Authenticate challenge,
 * after the failed-attempt delay for the caller's address (throttle.ts),
 * and logged without the password (rate-limited: a guessing loop must not
 * flood the log).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyRequest } from "fastify";
import type { LimitLog } from "../limit-log.js";
import type { Callers } from "./callers.js";
import { BASIC_CHALLENGE, BEARER_CHALLENGE, parseAuthorization } from "./credentials.js";
import type { Caller } from "./pool.js";
import { Problem } from "./problems.js";
import { PROTECTED_MODE_DETAIL, protectedModeRefuses } from "./protected-mode.js";
import type { AuthThrottle } from "./throttle.js";
import type { Tokens } from "./tokens.js";

declare module "fastify" {
  interface FastifyRequest {
    /** Who this request's node requests are sent as (set before the route runs). */
    caller: Caller;
    /** The bearer token the request came with, if any (DELETE /v1/auth/token revokes it). */
    bearer: string | null;
  }
}

/**
 * Routes served without credentials; they never reach a node: what a load
 * balancer probes, and the web console's files (no data: the console's own
 * API requests carry the user's credentials).
 */
export const OPEN_ROUTES: ReadonlySet<string> = new Set(["/healthz", "/readyz", "/ui", "/ui/", "/ui/:file"]);

export interface GatekeeperOptions {
  callers: Callers;
  tokens: Tokens;
  throttle: AuthThrottle;
  protectedMode: boolean;
  /** --host */
  boundHost: string;
  limitLog: LimitLog;
}

export class Gatekeeper {
  constructor(private readonly o: GatekeeperOptions) {}

  get tokens(): Tokens {
    return this.o.tokens;
  }

  /** The request's caller; throws a Problem (401 or 403) to refuse it. */
  async callerOf(req: FastifyRequest): Promise<Caller> {
    const creds = parseAuthorization(req.headers.authorization);
    const address = req.socket.remoteAddress ?? "unknown";
    switch (creds.kind) {
      case "none":
        if (
          protectedModeRefuses({
            protectedMode: this.o.protectedMode,
            boundHost: this.o.boundHost,
            remoteAddress: req.socket.remoteAddress,
            hasCredentials: false,
          })
        ) {
          this.o.limitLog.hit("protected-mode", "refused a request without credentials from another machine", {
            remote: address,
          });
          throw new Problem("forbidden", PROTECTED_MODE_DETAIL, { reason: "protected-mode" });
        }
        return "anonymous";
      case "malformed":
        return this.refuse(address, null, creds.why, BASIC_CHALLENGE);
      case "bearer": {
        const grant = this.o.tokens.lookup(creds.token);
        if (grant === null)
          return this.refuse(address, null, "the bearer token is unknown, revoked or expired", BEARER_CHALLENGE);
        req.bearer = creds.token;
        return this.check(address, grant.user, grant.password, BEARER_CHALLENGE);
      }
      case "basic":
        return this.check(address, creds.user, creds.password, BASIC_CHALLENGE);
    }
  }

  private async check(address: string, user: string, password: string, challenge: string): Promise<Caller> {
    const throttle = this.o.throttle;
    try {
      return await this.o.callers.resolve(user, password, async () => {
        const waitMs = throttle.waitMs(address);
        if (waitMs > 0) await sleep(waitMs);
      });
    } catch (err) {
      if (!(err instanceof Problem) || err.type !== "unauthorized") throw err;
      return this.refuse(address, user, `the node refused the credentials of user "${user}"`, challenge);
    }
  }

  /** Records the failure, waits its delay, throws the 401. */
  private async refuse(address: string, user: string | null, why: string, challenge: string): Promise<never> {
    const { delayMs, failures } = this.o.throttle.failed(address);
    this.o.limitLog.hit("auth-failure", "authentication failed", {
      remote: address,
      ...(user === null ? {} : { user }),
      why,
      failures,
      delayMs,
    });
    await sleep(delayMs);
    throw new Problem("unauthorized", why, {}, { "www-authenticate": challenge });
  }
}

/** A request's user, for logs: the caller's user name, "anonymous" or "gateway". */
export function userOf(caller: Caller): string {
  return typeof caller === "string" ? caller : caller.user;
}
