/**
 * The gateway's connections to one node: a few pipelined PiccoloClients,
 * used round-robin, so thousands of concurrent HTTP requests share a handful
 * of TCP connections (each client pipelines: many requests in flight per
 * connection, answers matched by id).
 *
 * Health, kept here and nowhere else:
 *   up       requests go through.
 *   down     the last request found the connection dead. Requests fail at
 *            once with 503 node-unavailable + Retry-After (no pile-up of
 *            requests waiting on connect timeouts), and a probe pings the
 *            node every CERIALIZER_PROBE_INTERVAL_MS until it answers; then
 *            the node is up again, with no operator action.
 * A TIMEOUT does not mark the node down: a slow node is not a dead one, and
 * the caller gets 504 saying the write may have been applied.
 *

 * Writes are never retried here: after a dropped connection the gateway
 * cannot know whether the node applied the write, so it says so (503/504)
 * and lets the caller decide, as the native client does. (In a cluster, a
 * request certainly not carried out is sent to another member by the
 * router: router.ts, runForKey.)
 *
 * Whose connections. The node is the one authority on users and what they
 * may do (docs/decisions/0263-gateway-authentication.md), so every request
 * travels on a connection authenticated as the HTTP caller who sent it:
 *   "gateway"    the gateway's own identity (--user, --password-file): its
 *                probes and the cluster view's polling, never a caller's
 *                request;
 *   "anonymous"  no AUTH at all, for callers who send no credentials (the
 *                node's default user; the same connections as "gateway"
 *                when the gateway has no credentials of its own);
 *   an Identity  a caller whose credentials were checked (callers.ts):
 *                CALLER_CONNECTIONS_PER_NODE connections of its own, made
 *                on its first request to this node and closed when the
 *                caller is evicted from the gateway's bounded cache.
 */
import type { ConnectionOptions } from "node:tls";
import { PiccoloClient } from "../client/client.js";
import { ErrorCode, PiccoloError } from "../errors.js";
import { CERIALIZER_PROBE_INTERVAL_MS } from "../limits.js";
import { Problem, RETRY_AFTER_SECONDS } from "./problems.js";

/** Pipelined connections to each node per authenticated caller (many requests share each). */
export const CALLER_CONNECTIONS_PER_NODE = 2;

/** A caller whose credentials the node accepted (callers.ts keeps them). */
export interface Identity {
  /** Unique for the gateway's life; the key of its connections in every link. */
  readonly id: number;
  readonly user: string;
  readonly password: string;
  /** Evicted from the cache: its connections are closing and no new ones are made. */
  retired: boolean;
}

/** Who a request to the node is sent as (see the header). */
export type Caller = Identity | "anonymous" | "gateway";

export interface NodeLinkOptions {
  host: string;
  port: number;
  connections: number;
  maxInFlight: number;
  timeoutMs: number;
  /** The gateway's own identity (--user, --password-file), for its own traffic only. */
  user?: string;
  password?: string;
  /** Speak TLS to the node (--node-tls-ca-cert-file): node:tls's options, the CA and a client certificate. */
  tls?: ConnectionOptions;
  /** Called when the node goes down or comes back (logs, metrics). */
  onState?: (link: NodeLink, up: boolean, reason: string) => void;
}

interface CallerPool {
  clients: PiccoloClient[];
  next: number;
}

export class NodeLink {
  readonly address: string;
  /** The gateway's own connections. */
  private readonly clients: PiccoloClient[];
  private next = 0;
  /** Connections without AUTH; the gateway's own when it has no credentials. */
  private anonymous: CallerPool | null;
  private readonly callers = new Map<number, CallerPool>();
  private probe: NodeJS.Timeout | null = null;
  private closed = false;
  up = true;
  inFlight = 0;
  lastError = "";

  constructor(private readonly o: NodeLinkOptions) {
    this.address = `${o.host}:${o.port}`;
    this.clients = Array.from({ length: o.connections }, () => this.newClient(0, "gateway"));
    this.anonymous = o.password === undefined ? { clients: this.clients, next: 0 } : null;
  }

  /**
   * A connection of its own, outside the pool, authenticated as `as`: a
   * watch stream's. The client stops reading a connection while any of its
   * watches' readers is behind, which would hold up every request sharing
   * it; and a node takes at most WATCH_MAX_PER_CONNECTION watches a
   * connection. `extraTimeoutMs` is added to the gateway's timeout toward
   * the node. The caller closes it.
   */
  newClient(extraTimeoutMs: number, as: Caller): PiccoloClient {
    const o = this.o;
    const auth =
      as === "anonymous"
        ? {}
        : as === "gateway"
          ? {
              ...(o.password === undefined ? {} : { password: o.password }),
              ...(o.user === undefined ? {} : { user: o.user }),
            }
          : { user: as.user, password: as.password };
    return new PiccoloClient({
      host: o.host,
      port: o.port,
      timeoutMs: o.timeoutMs + extraTimeoutMs,
      connectTimeoutMs: Math.min(o.timeoutMs, 1000),
      ...auth,
      ...(o.tls === undefined ? {} : { tls: o.tls }),
    });
  }

  /** Connects at start-up; a node that does not answer starts out down and is probed. */
  async start(): Promise<void> {
    try {
      await this.clients[0]!.ping();
    } catch (err) {
      if (!answered(err)) this.markDown(err);
    }
  }

  /**
   * Runs `f` as `as` on one of the node's connections (or on `client`, one
   * of `as`'s picked before). Throws a Problem (503) when the node is down
   * or has too many requests in flight; marks the node down when `f` finds
   * the connection closed.
   */
  async run<T>(as: Caller, f: (c: PiccoloClient) => Promise<T>, client?: PiccoloClient): Promise<T> {
    if (!this.up)
      throw new Problem(
        "node-unavailable",
        `node ${this.address} is unreachable (${this.lastError}); retry shortly`,
        { node: this.address },
        { "retry-after": String(RETRY_AFTER_SECONDS) },
      );
    if (this.inFlight >= this.o.maxInFlight)
      throw new Problem(
        "overloaded",
        `${this.inFlight} requests are in flight to node ${this.address} (limit ${this.o.maxInFlight})`,
        { node: this.address },
        { "retry-after": String(RETRY_AFTER_SECONDS) },
      );
    this.inFlight++;
    try {
      return await f(client ?? this.pick(as));
    } catch (err) {
      if (err instanceof PiccoloError && err.code === ErrorCode.CONNECTION_CLOSED) this.markDown(err);
      throw err;
    } finally {
      this.inFlight--;
    }
  }

  /** One of `as`'s connections, for a sequence of requests that must stay in order (a batch). */
  pick(as: Caller): PiccoloClient {
    if (as === "gateway") {
      const c = this.clients[this.next]!;
      this.next = (this.next + 1) % this.clients.length;
      return c;
    }
    let pool: CallerPool | undefined;
    if (as === "anonymous") {
      this.anonymous ??= {
        clients: Array.from({ length: this.o.connections }, () => this.newClient(0, "anonymous")),
        next: 0,
      };
      pool = this.anonymous;
    } else {
      pool = this.callers.get(as.id);
      if (pool === undefined) {
        // A caller evicted while its request was on the way: making connections for it now would
        // leave them open with no one to close them.
        if (as.retired || this.closed)
          throw new Problem(
            "overloaded",
            "more distinct callers than the gateway keeps connections for (--max-callers) are active; retry",
            {},
            { "retry-after": String(RETRY_AFTER_SECONDS) },
          );
        pool = {
          clients: Array.from({ length: CALLER_CONNECTIONS_PER_NODE }, () => this.newClient(0, as)),
          next: 0,
        };
        this.callers.set(as.id, pool);
      }
    }
    const c = pool.clients[pool.next]!;
    pool.next = (pool.next + 1) % pool.clients.length;
    return c;
  }

  /**
   * A caller was evicted: its connections close once the requests on them
   * are answered (closing under a request would fail it, and a closed
   * connection under a request marks the node down).
   */
  dropCaller(id: number): void {
    const pool = this.callers.get(id);
    if (pool === undefined) return;
    this.callers.delete(id);
    for (const c of pool.clients) void closeWhenIdle(c, this.o.timeoutMs);
  }

  private markDown(err: unknown): void {
    this.lastError = (err as Error).message;
    if (!this.up || this.closed) return;
    this.up = false;
    this.o.onState?.(this, false, this.lastError);
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    if (this.closed) return;
    this.up = false;
    this.probe = setTimeout(() => {
      this.probe = null;
      this.clients[0]!.ping().then(
        () => this.cameBack(),
        (err: unknown) => {
          // An answer, even a refusal (NOAUTH: the gateway has no credentials of its own), is a node alive.
          if (answered(err)) return this.cameBack();
          this.lastError = (err as Error).message;
          this.scheduleProbe();
        },
      );
    }, CERIALIZER_PROBE_INTERVAL_MS);
  }

  private cameBack(): void {
    if (this.closed) return;
    this.up = true;
    this.lastError = "";
    this.o.onState?.(this, true, "answered a ping");
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.probe !== null) clearTimeout(this.probe);
    const all = [...this.clients];
    if (this.anonymous !== null && this.anonymous.clients !== this.clients) all.push(...this.anonymous.clients);
    for (const p of this.callers.values()) all.push(...p.clients);
    this.callers.clear();
    await Promise.all(all.map((c) => c.close()));
  }
}

/** The node answered (with an error): it is up. Only a lost connection or no answer in time mean down. */
function answered(err: unknown): boolean {
  return err instanceof PiccoloError && err.code !== ErrorCode.CONNECTION_CLOSED && err.code !== ErrorCode.TIMEOUT;
}

/** Closes `c` once no request is in flight on it, or after `maxWaitMs` at most. */
async function closeWhenIdle(c: PiccoloClient, maxWaitMs: number): Promise<void> {
  const start = Date.now();
  while (c.inFlight > 0 && Date.now() - start < maxWaitMs) await new Promise((r) => setTimeout(r, 50));
  await c.close();
}
