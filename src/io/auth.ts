/**
 * Who a connection is, for every client port: AUTH checked against the
 * node's users (src/security/users.ts), failed attempts logged and slowed
 * (src/security/auth-throttle.ts), and protected mode (Redis's): a node
 * bound beyond loopback whose default user has no password serves no
 * client from another machine. docs/security.md.
 */
import { isIPv4, isIPv6 } from "node:net";
import type { LimitLevel } from "../limit-log.js";
import { AuthThrottle } from "../security/auth-throttle.js";
import type { User, Users } from "../security/users.js";

/** Whether `address` (an IP as a socket reports it) is this machine's loopback. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.startsWith("::ffff:") ? address.slice(7) : address;
  if (isIPv4(a)) return a.startsWith("127.");
  if (isIPv6(a)) return a === "::1";
  return a === "localhost";
}

/**
 * Protected mode's rule: refuse a client when the mode is on, the node
 * listens beyond loopback, the default user needs no password, and the
 * client is not on this machine.
 */
export function protectedRefuses(
  on: boolean,
  bindHost: string,
  authRequired: boolean,
  remote: string | undefined,
): boolean {
  return on && !isLoopback(bindHost) && !authRequired && !isLoopback(remote);
}

export interface AuthLog {
  limitHit(limit: string, message: string, detail?: object, level?: LimitLevel): void;
}

export class Authenticator {
  private readonly throttle = new AuthThrottle();

  constructor(
    readonly users: Users,
    private readonly bindHost: string,
    private readonly protectedMode: boolean,
    private readonly log: AuthLog,
  ) {}

  /** Whether this node refuses a client from `remote` now (protected mode: see protectedRefuses). */
  refuses(remote: string | undefined): boolean {
    return protectedRefuses(this.protectedMode, this.bindHost, this.users.authRequired, remote);
  }

  /** Protected mode is in force for remote clients (logged once at start, with how to fix it). */
  get protecting(): boolean {
    return protectedRefuses(this.protectedMode, this.bindHost, this.users.authRequired, undefined);
  }

  /**
   * Checks AUTH `user` `password` from `remote`: the user, or null after
   * the throttle's delay for this address. Never throws.
   */
  async check(user: string, password: Uint8Array, remote: string | undefined, port: string): Promise<User | null> {
    let u: User | null = null;
    try {
      u = await this.users.verify(user, password);
    } catch {
      u = null;
    }
    if (u !== null) return u;
    const address = remote ?? "unknown";
    const delayMs = this.throttle.failed(address);
    this.log.limitHit("auth-failed", "a client failed to authenticate", {
      port,
      user: user.slice(0, 64),
      remote: address,
      failures: this.throttle.failures(address),
      delayMs,
    });
    await new Promise((r) => setTimeout(r, delayMs));
    return null;
  }
}
