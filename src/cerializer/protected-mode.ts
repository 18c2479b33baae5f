/**
 * Protected mode, as Redis has it, for the gateway: bound where other
 * machines can reach it, the gateway does not serve a request that carries
 * no credentials unless it comes from this machine. Without credentials a
 * request runs as the node's default user, which on a fresh install needs
 * no password: a gateway started with --host 0.0.0.0 by mistake would hand
 * the whole store to the network. The answer says how to fix it.
 *
 * A pure decision (no sockets), so it is tested as a table: tests may bind
 * only to 127.0.0.1, where every request is local.
 */
import { isIP } from "node:net";

export const PROTECTED_MODE_DETAIL =
  "the gateway is in protected mode: it listens on a non-loopback address and this request, from another machine, " +
  "carries no credentials. Send them (Authorization: Basic, or a Bearer token from POST /v1/auth/token), or bind " +
  "the gateway to 127.0.0.1 (--host), or start it with --protected-mode no if every client that can reach it is trusted";

/** A loopback address: 127.0.0.0/8, ::1, or an IPv4 loopback mapped into IPv6. */
export function isLoopbackAddress(address: string): boolean {
  const a = address.toLowerCase();
  if (a === "::1" || a === "0:0:0:0:0:0:0:1") return true;
  const v4 = a.startsWith("::ffff:") ? a.slice(7) : a;
  return isIP(v4) === 4 && v4.startsWith("127.");
}

/** The host the gateway listens on reaches only this machine ("localhost" included). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || isLoopbackAddress(h);
}

export interface ProtectedModeInput {
  protectedMode: boolean;
  /** --host: the address the gateway is bound to. */
  boundHost: string;
  /** The request's peer address (undefined: the socket is gone; treated as remote). */
  remoteAddress: string | undefined;
  /** The request carries an Authorization header. */
  hasCredentials: boolean;
}

/** Whether protected mode refuses this request (403 forbidden with PROTECTED_MODE_DETAIL). */
export function protectedModeRefuses(i: ProtectedModeInput): boolean {
  if (!i.protectedMode || i.hasCredentials) return false;
  if (isLoopbackHost(i.boundHost)) return false;
  return i.remoteAddress === undefined || !isLoopbackAddress(i.remoteAddress);
}
