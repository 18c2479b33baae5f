/**
 * Failed authentications are slowed, per client address: no unlimited fast
 * guessing (docs/security.md). After a failure from an address, its next
 * failed answer waits FIRST_DELAY_MS, doubling with each failure up to
 * MAX_DELAY_MS; an address with no failure for FORGET_MS starts over. A
 * success answers at once and is never delayed. The connection waits with
 * its answer (commands after an AUTH wait for it), so one connection
 * cannot pipeline guesses; many connections from one address share its
 * count.
 *
 * Memory is bounded: at most MAX_ADDRESSES are remembered; when full, the
 * oldest is forgotten (a flood of addresses can only reset its own).
 */
export const AUTH_FIRST_DELAY_MS = 100;
export const AUTH_MAX_DELAY_MS = 2_000;
export const AUTH_FORGET_MS = 60_000;
export const AUTH_MAX_ADDRESSES = 10_000;

interface Record {
  failures: number;
  lastMs: number;
}

export class AuthThrottle {
  private readonly byAddress = new Map<string, Record>();

  constructor(private readonly now: () => number = Date.now) {}

  /** A failure from `address`: how long (ms) to hold its answer. */
  failed(address: string): number {
    const nowMs = this.now();
    let r = this.byAddress.get(address);
    if (r !== undefined && nowMs - r.lastMs > AUTH_FORGET_MS) r = undefined;
    if (r === undefined) {
      if (this.byAddress.size >= AUTH_MAX_ADDRESSES) this.byAddress.delete(this.byAddress.keys().next().value!);
      r = { failures: 0, lastMs: nowMs };
    }
    this.byAddress.delete(address); // re-inserted last: the Map's order is the eviction order
    r.failures++;
    r.lastMs = nowMs;
    this.byAddress.set(address, r);
    return Math.min(AUTH_MAX_DELAY_MS, AUTH_FIRST_DELAY_MS * 2 ** Math.min(r.failures - 1, 20));
  }

  /** Failures remembered for `address` (0 when forgotten). */
  failures(address: string): number {
    const r = this.byAddress.get(address);
    return r === undefined || this.now() - r.lastMs > AUTH_FORGET_MS ? 0 : r.failures;
  }
}
