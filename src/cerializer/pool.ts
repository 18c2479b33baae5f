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
 * and lets the caller decide, as the native client does.
 */
import { PiccoloClient } from "../client/client.js";
import { ErrorCode, PiccoloError } from "../errors.js";
import { CERIALIZER_PROBE_INTERVAL_MS } from "../limits.js";
import { Problem, RETRY_AFTER_SECONDS } from "./problems.js";

export interface NodeLinkOptions {
  host: string;
  port: number;
  connections: number;
  maxInFlight: number;
  timeoutMs: number;
  password?: string;
  /** Called when the node goes down or comes back (logs, metrics). */
  onState?: (link: NodeLink, up: boolean, reason: string) => void;
}

export class NodeLink {
  readonly address: string;
  private readonly clients: PiccoloClient[];
  private next = 0;
  private probe: NodeJS.Timeout | null = null;
  private closed = false;
  up = true;
  inFlight = 0;
  lastError = "";

  constructor(private readonly o: NodeLinkOptions) {
    this.address = `${o.host}:${o.port}`;
    this.clients = Array.from({ length: o.connections }, () => this.newClient());
  }

  /**
   * A connection of its own, outside the pool: a watch stream's. The client
   * stops reading a connection while any of its watches' readers is behind,
   * which would hold up every request sharing it; and a node takes at most
   * WATCH_MAX_PER_CONNECTION watches a connection. `extraTimeoutMs` is added
   * to the gateway's timeout toward the node. The caller closes it.
   */
  newClient(extraTimeoutMs = 0): PiccoloClient {
    const o = this.o;
    return new PiccoloClient({
      host: o.host,
      port: o.port,
      timeoutMs: o.timeoutMs + extraTimeoutMs,
      connectTimeoutMs: Math.min(o.timeoutMs, 1000),
      ...(o.password === undefined ? {} : { password: o.password }),
    });
  }

  /** Connects at start-up; a node that does not answer starts out down and is probed. */
  async start(): Promise<void> {
    try {
      await this.clients[0]!.ping();
    } catch (err) {
      this.markDown(err);
    }
  }

  /**
   * Runs `f` on one of the node's connections. Throws a Problem (503) when
   * the node is down or has too many requests in flight; marks the node
   * down when `f` finds the connection closed.
   */
  async run<T>(f: (c: PiccoloClient) => Promise<T>, client?: PiccoloClient): Promise<T> {
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
      return await f(client ?? this.pick());
    } catch (err) {
      if (err instanceof PiccoloError && err.code === ErrorCode.CONNECTION_CLOSED) this.markDown(err);
      throw err;
    } finally {
      this.inFlight--;
    }
  }

  /** One connection, for a sequence of requests that must stay in order (a batch). */
  pick(): PiccoloClient {
    const c = this.clients[this.next]!;
    this.next = (this.next + 1) % this.clients.length;
    return c;
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
        () => {
          if (this.closed) return;
          this.up = true;
          this.lastError = "";
          this.o.onState?.(this, true, "answered a ping");
        },
        (err: unknown) => {
          this.lastError = (err as Error).message;
          this.scheduleProbe();
        },
      );
    }, CERIALIZER_PROBE_INTERVAL_MS);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.probe !== null) clearTimeout(this.probe);
    await Promise.all(this.clients.map((c) => c.close()));
  }
}
