/**
 * PiccoloClusterClient: a client for a Piccolo cluster that sends each key
 * straight to the member leading its partition.
 *
 * Any member serves any key (members forward to the leader), so a plain
 * PiccoloClient pointed at one member works; this one saves the forwarding
 * hop. It learns the partition map from the members' cluster info (which
 * member each connection reaches, and each partition's leader), refreshes
 * it every `refreshMs`, and again at once after a request fails in a way
 * that suggests the map is stale (a connection lost, a timeout, NOT_LEADER).
 *
 * Outcomes are the plain client's: a write whose connection dropped or timed
 * out may or may not have been applied and is never retried behind your back.
 * A write the member certainly did not carry out (SHUTTING_DOWN: it is
 * stopping; NOT_LEADER, UNAVAILABLE; or a request that never left this
 * process) is retried once on another member, as is any read: retrying
 * either cannot apply anything twice. So a member stopped gracefully (a
 * rolling restart) costs this client's callers nothing but a little latency.
 *
 * A read with `{ stale: true }` goes to one of the partition's replicas
 * instead of its leader, which answers from its own copy (docs/cluster.md,
 * "Stale reads"). Each client picks, per partition, one replica at random
 * and keeps to it, so the clients' stale reads spread over the replicas
 * while one client's reads of a partition go to the same member: they never
 * go back in time, unless that member fails and the read is retried on
 * another, or the partition's replicas change.
 */
import { partitionOf } from "../cluster/placement.js";
import { ErrorCode, PiccoloError } from "../errors.js";
import { initHash } from "../hash.js";
import {
  type Bytes,
  type Entry,
  PiccoloClient,
  type ReadOptions,
  type TxnRequest,
  type TxnResult,
  txnKeys,
  type WriteOptions,
} from "./client.js";

export interface ClusterClientOptions {
  /** Client addresses of members ("host:port"): one is enough, the others are learned from it; more help when some are down at start. */
  members: string[];
  timeoutMs?: number;
  password?: string;
  /** How often the partition map is refreshed. */
  refreshMs?: number;
}

export class PiccoloClusterClient {
  private readonly clients: PiccoloClient[];
  /** Client addresses already connected to (given, or learned from the members). */
  private readonly addresses = new Set<string>();
  private readonly options: ClusterClientOptions;
  /** Member id -> the connection that reaches it. */
  private readonly byMember = new Map<number, PiccoloClient>();
  /** Partition -> leader member id (0: unknown). */
  private leaders: number[] = [];
  /** Partition -> its voting replicas' member ids, for stale reads. */
  private replicas: number[][] = [];
  /** Picks this client's replica of each partition for stale reads (see the top). */
  private readonly replicaPick = Math.floor(Math.random() * 2 ** 16);
  private timer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  private next = 0;

  private constructor(o: ClusterClientOptions) {
    if (o.members.length === 0) throw new Error("a cluster client needs at least one member address");
    this.options = o;
    this.clients = [];
    for (const a of o.members) this.add(a);
  }

  /** A connection to one more member (connected lazily, on its first request). */
  private add(address: string): void {
    if (this.addresses.has(address)) return;
    const m = /^(.+):(\d+)$/.exec(address);
    if (m === null) throw new Error(`"${address}" is not host:port`);
    this.addresses.add(address);
    this.clients.push(
      new PiccoloClient({
        host: m[1]!,
        port: Number(m[2]),
        ...(this.options.timeoutMs === undefined ? {} : { timeoutMs: this.options.timeoutMs }),
        ...(this.options.password === undefined ? {} : { password: this.options.password }),
      }),
    );
  }

  /** Connects, learns the partition map, and keeps it fresh. */
  static async connect(o: ClusterClientOptions): Promise<PiccoloClusterClient> {
    await initHash();
    const c = new PiccoloClusterClient(o);
    await c.refresh();
    if (c.leaders.length === 0) throw new PiccoloError(ErrorCode.CONNECTION_CLOSED, "no member answered");
    c.timer = setInterval(() => void c.refresh(), o.refreshMs ?? 1000);
    c.timer.unref();
    return c;
  }

  /**
   * Re-reads the partition map from every member that answers, and connects
   * to members it did not know (each member announces its client address to
   * its peers, so one address is enough to find them all).
   */
  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      const learned = await this.readMaps();
      if (learned.some((a) => !this.addresses.has(a))) {
        for (const a of learned) this.add(a);
        await this.readMaps();
      }
    })().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  /** One pass over the members: the fullest leader map wins. Returns the client addresses they listed. */
  private async readMaps(): Promise<string[]> {
    let best: number[] | null = null;
    let replicas: number[][] = [];
    const learned: string[] = [];
    await Promise.all(
      this.clients.map(async (c) => {
        try {
          const info = await c.clusterInfo();
          this.byMember.set(info.self, c);
          for (const m of info.members) if (m.clientAddress !== "") learned.push(m.clientAddress);
          const leaders = info.partitions.map((p) => p.leader);
          if (best === null || leaders.filter(Boolean).length > best.filter(Boolean).length) {
            best = leaders;
            replicas = info.partitions.map((p) => p.replicas);
          }
        } catch {
          // An unreachable member keeps its old place in the map until it answers again.
        }
      }),
    );
    if (best !== null) {
      this.leaders = best;
      this.replicas = replicas;
    }
    return learned;
  }

  /** The connection to the leader of `key`'s partition, or any member when unknown. */
  private route(key: Bytes): PiccoloClient {
    if (this.leaders.length > 0) {
      const k = typeof key === "string" ? Buffer.from(key, "utf8") : key;
      const leader = this.byMember.get(this.leaders[partitionOf(k, this.leaders.length)] ?? 0);
      if (leader !== undefined) return leader;
    }
    return this.any();
  }

  /** For a stale read: this client's chosen replica of `key`'s partition, else as route(). */
  private routeStale(key: Bytes): PiccoloClient {
    if (this.replicas.length > 0) {
      const k = typeof key === "string" ? Buffer.from(key, "utf8") : key;
      const p = partitionOf(k, this.replicas.length);
      const rs = this.replicas[p] ?? [];
      const c = rs.length === 0 ? undefined : this.byMember.get(rs[(this.replicaPick + p) % rs.length]!);
      if (c !== undefined) return c;
    }
    return this.route(key);
  }

  private any(): PiccoloClient {
    const c = this.clients[this.next % this.clients.length]!;
    this.next++;
    return c;
  }

  private stale(err: unknown): boolean {
    return (
      err instanceof PiccoloError &&
      (err.code === ErrorCode.CONNECTION_CLOSED ||
        err.code === ErrorCode.TIMEOUT ||
        err.code === ErrorCode.NOT_LEADER ||
        err.code === ErrorCode.UNAVAILABLE ||
        err.code === ErrorCode.SHUTTING_DOWN)
    );
  }

  /** Certainly not carried out: safe to send again (see the top). */
  private notApplied(err: unknown): boolean {
    return (
      err instanceof PiccoloError &&
      (err.code === ErrorCode.SHUTTING_DOWN ||
        err.code === ErrorCode.NOT_LEADER ||
        err.code === ErrorCode.UNAVAILABLE ||
        (err.code === ErrorCode.CONNECTION_CLOSED && err.unsent))
    );
  }

  private async write<T>(key: Bytes, f: (c: PiccoloClient) => Promise<T>): Promise<T> {
    const first = this.route(key);
    try {
      return await f(first);
    } catch (err) {
      if (this.stale(err)) void this.refresh();
      if (!this.notApplied(err)) throw err;
      // Each other member once (one of them may be the one stopping or starting), while nothing was applied.
      let last = err;
      for (const other of this.clients) {
        if (other === first) continue;
        try {
          return await f(other);
        } catch (e) {
          if (!this.notApplied(e)) throw e;
          last = e;
        }
      }
      throw last;
    }
  }

  private async read<T>(key: Bytes, o: ReadOptions, f: (c: PiccoloClient) => Promise<T>): Promise<T> {
    const first = o.stale === true ? this.routeStale(key) : this.route(key);
    try {
      return await f(first);
    } catch (err) {
      if (!this.stale(err)) throw err;
      void this.refresh();
      let other = this.any();
      if (other === first) other = this.any();
      return f(other);
    }
  }

  get(key: Bytes, options: ReadOptions = {}): Promise<Entry | null> {
    return this.read(key, options, (c) => c.get(key, options));
  }

  exists(key: Bytes, options: ReadOptions = {}): Promise<boolean> {
    return this.read(key, options, (c) => c.exists(key, options));
  }

  ttl(key: Bytes, options: ReadOptions = {}): Promise<number> {
    return this.read(key, options, (c) => c.ttl(key, options));
  }

  put(key: Bytes, value: Bytes, options: WriteOptions = {}): Promise<number> {
    return this.write(key, (c) => c.put(key, value, options));
  }

  insert(key: Bytes, value: Bytes, options: WriteOptions = {}): Promise<number> {
    return this.write(key, (c) => c.insert(key, value, options));
  }

  update(key: Bytes, value: Bytes, options: WriteOptions = {}): Promise<number> {
    return this.write(key, (c) => c.update(key, value, options));
  }

  cas(key: Bytes, value: Bytes, expectedVersion: number, options: WriteOptions = {}): Promise<number> {
    return this.write(key, (c) => c.cas(key, value, expectedVersion, options));
  }

  delete(key: Bytes, options: { ifVersion?: number } = {}): Promise<boolean> {
    return this.write(key, (c) => c.delete(key, options));
  }

  /**
   * A transaction, sent to the leader of its keys' partition. Keys in more
   * than one partition are refused here, before anything is sent
   * (CROSS_PARTITION, as the member would answer): give them one hash tag.
   * Never retried, as a write.
   */
  txn(t: TxnRequest): Promise<TxnResult> {
    const keys = txnKeys(t).map((k) => (typeof k === "string" ? Buffer.from(k, "utf8") : k));
    const n = this.leaders.length;
    if (n > 0 && keys.length > 0) {
      const parts = new Set(keys.map((k) => partitionOf(k, n)));
      if (parts.size > 1)
        return Promise.reject(
          new PiccoloError(
            ErrorCode.CROSS_PARTITION,
            `the transaction's keys are in ${parts.size} partitions; give them one hash tag, as {user:1}:a and {user:1}:b`,
            true,
          ),
        );
    }
    if (keys.length === 0) return this.any().txn(t);
    return this.write(keys[0]!, (c) => c.txn(t));
  }

  /** Operations without a single key go to any member (it forwards per key). */
  member(): PiccoloClient {
    return this.any();
  }

  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    await Promise.all(this.clients.map((c) => c.close()));
  }
}
