/**
 * The callers the gateway has connections for: credentials the node
 * accepted, each an Identity with connections of its own to each node
 * (pool.ts), kept in a bounded cache.
 *
 * A credential is checked once, by the node: an AUTH on a fresh connection
 * (the node is the one authority on users; the gateway keeps no user list
 * and checks no permission itself, docs/decisions/0263). Checked
 * credentials are kept by their key (credentials.ts: the user and a keyed
 * hash of the password), least recently used first out: at most
 * `maxCallers`; the one evicted has its connections closed. A credential
 * is checked again once `reverifyMs` old, so a password changed or a user
 * deleted on the node stops working through the gateway within that time
 * even for a caller who keeps using it.
 *
 * Requests for a credential being checked wait for that one check (a burst
 * of requests from a new caller makes one AUTH, not a burst of them).
 */
import { CredentialKeys } from "./credentials.js";
import type { Identity } from "./pool.js";

/** Credential sets kept with connections of their own (each: CALLER_CONNECTIONS_PER_NODE per node). */
export const CERIALIZER_MAX_CALLERS = 64;
/** A kept credential is checked with the node again when this old. */
export const CALLER_REVERIFY_MS = 60_000;

export interface CallersOptions {
  maxCallers: number;
  reverifyMs: number;
  /**
   * Asks the node whether it accepts `user`/`password`: resolves if so,
   * throws Problem("unauthorized") if not, or the error that kept the node
   * from answering (503, 504).
   */
  verify(user: string, password: string): Promise<void>;
  /** `identity` left the cache: close its connections. */
  onEvict(identity: Identity): void;
  now?: () => number;
}

interface Entry {
  identity: Identity;
  verifiedAtMs: number;
}

export class Callers {
  private readonly keys = new CredentialKeys();
  /** Least recently used first. */
  private readonly cache = new Map<string, Entry>();
  private readonly checking = new Map<string, Promise<Identity>>();
  private nextId = 1;
  private readonly now: () => number;

  constructor(private readonly o: CallersOptions) {
    if (!(o.maxCallers >= 1)) throw new Error("Callers: maxCallers must be at least 1");
    this.now = o.now ?? Date.now;
  }

  get size(): number {
    return this.cache.size;
  }

  /**
   * The identity for these credentials, checking them with the node first
   * unless they were checked recently. `beforeCheck` runs (and is awaited)
   * before a check goes to the node: the failed-attempt throttle's wait.
   */
  async resolve(user: string, password: string, beforeCheck: () => Promise<void>): Promise<Identity> {
    const key = this.keys.of(user, password);
    const e = this.cache.get(key);
    if (e !== undefined && this.now() - e.verifiedAtMs < this.o.reverifyMs) {
      this.cache.delete(key);
      this.cache.set(key, e);
      return e.identity;
    }
    let p = this.checking.get(key);
    if (p === undefined) {
      p = this.check(key, user, password, beforeCheck).finally(() => this.checking.delete(key));
      this.checking.set(key, p);
    }
    return p;
  }

  /** The node refused `identity` on one of its connections (NOAUTH): check its credentials again next time. */
  forget(identity: Identity): void {
    for (const [key, e] of this.cache)
      if (e.identity === identity) {
        this.evict(key, e);
        return;
      }
  }

  /** Drops every identity (the gateway stops). */
  clear(): void {
    for (const [key, e] of [...this.cache]) this.evict(key, e);
  }

  private async check(key: string, user: string, password: string, beforeCheck: () => Promise<void>) {
    await beforeCheck();
    try {
      await this.o.verify(user, password);
    } catch (err) {
      const stale = this.cache.get(key);
      // Refused now (not merely unreachable): the kept identity goes too.
      if (stale !== undefined && (err as { type?: string }).type === "unauthorized") this.evict(key, stale);
      throw err;
    }
    const kept = this.cache.get(key);
    if (kept !== undefined) {
      kept.verifiedAtMs = this.now();
      this.cache.delete(key);
      this.cache.set(key, kept);
      return kept.identity;
    }
    while (this.cache.size >= this.o.maxCallers) {
      const [oldKey, old] = this.cache.entries().next().value as [string, Entry];
      this.evict(oldKey, old);
    }
    const identity: Identity = { id: this.nextId++, user, password, retired: false };
    this.cache.set(key, { identity, verifiedAtMs: this.now() });
    return identity;
  }

  private evict(key: string, e: Entry): void {
    this.cache.delete(key);
    e.identity.retired = true;
    this.o.onEvict(e.identity);
  }
}
