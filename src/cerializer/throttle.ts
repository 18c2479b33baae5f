/**
 * Failed authentications, slowed per client address: no unlimited fast
 * guessing of passwords through the gateway.
 *
 * Each failure from an address doubles the delay before its 401, from
 * `baseDelayMs` up to `maxDelayMs` (100 ms, 200, 400, ... 2 s by default),
 * and a new attempt that needs checking waits out the delay still running
 * (so guesses sent in parallel are slowed too, not only those in a row).
 * An address with no failure for `forgetMs` is forgotten. Successes do not
 * reset the count: a caller who holds one good password could otherwise
 * interleave it to guess another's at full speed.
 *
 * Bounded: at most `maxTracked` addresses are remembered. When full, the
 * least recently failed is dropped first (a Map keeps insertion order, and
 * a failure moves its address to the end). Someone with more addresses
 * than that can get some of them forgotten; docs/cerializer.md says so.
 *
 * Pure: time is passed in (`now`), nothing sleeps here; the caller waits.
 */

export interface ThrottleOptions {
  baseDelayMs: number;
  maxDelayMs: number;
  forgetMs: number;
  maxTracked: number;
}

export const THROTTLE_DEFAULTS: ThrottleOptions = {
  baseDelayMs: 100,
  maxDelayMs: 2_000,
  forgetMs: 60_000,
  maxTracked: 10_000,
};

interface Record_ {
  failures: number;
  lastFailureMs: number;
  /** No new attempt is checked before this time. */
  blockedUntilMs: number;
}

export class AuthThrottle {
  private readonly byAddress = new Map<string, Record_>();

  constructor(
    private readonly o: ThrottleOptions = THROTTLE_DEFAULTS,
    private readonly now: () => number = Date.now,
  ) {
    if (!(o.baseDelayMs >= 0 && o.maxDelayMs >= o.baseDelayMs && o.maxTracked >= 1))
      throw new Error(`AuthThrottle: bad options ${JSON.stringify(o)}`);
  }

  /** Addresses remembered now (for tests and metrics). */
  get size(): number {
    return this.byAddress.size;
  }

  /** How long an attempt from `address` must wait before it is checked (0: at once). */
  waitMs(address: string): number {
    const r = this.live(address);
    return r === null ? 0 : Math.max(0, r.blockedUntilMs - this.now());
  }

  /** Records a failure from `address`; returns the delay to wait before answering it, and its count. */
  failed(address: string): { delayMs: number; failures: number } {
    const now = this.now();
    let r = this.live(address);
    if (r === null) r = { failures: 0, lastFailureMs: now, blockedUntilMs: now };
    else this.byAddress.delete(address);
    r.failures++;
    r.lastFailureMs = now;
    const delayMs = Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** Math.min(r.failures - 1, 30));
    r.blockedUntilMs = Math.max(r.blockedUntilMs, now + delayMs);
    while (this.byAddress.size >= this.o.maxTracked) {
      const oldest = this.byAddress.keys().next().value as string;
      this.byAddress.delete(oldest);
    }
    this.byAddress.set(address, r);
    return { delayMs, failures: r.failures };
  }

  /** The address's record, unless it is forgotten by now (then it is dropped). */
  private live(address: string): Record_ | null {
    const r = this.byAddress.get(address);
    if (r === undefined) return null;
    if (this.now() - r.lastFailureMs >= this.o.forgetMs) {
      this.byAddress.delete(address);
      return null;
    }
    return r;
  }
}
