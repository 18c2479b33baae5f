/**
 * Which node serves a key: the one place the gateway decides it.
 *
 * Without --cluster, the nodes given with --nodes are independent stores,
 * and the gateway spreads keys over them by rendezvous (highest-random-
 * weight) hashing: each node scores hash(node, key) and the highest wins.
 * Adding or removing a node moves only the keys that node wins or held, and
 * every gateway with the same node list agrees without talking to the
 * others. With one node (the default) every key goes to it. A listing walks
 * the nodes one after another.
 *
 * With --cluster, the nodes are seeds of one Piccolo cluster (issue #7), and
 * the members the gateway talks to are the cluster's own, learned and kept
 * up to date by cluster-view.ts, with each partition's leader. A key goes
 * straight to its partition's leader; when that is unknown or down, to the
 * first member that is up in the same rendezvous order (every member serves
 * every key: it forwards to the leader). A listing walks one member, since
 * each member lists the whole keyspace. Nothing else in the gateway knows
 * how keys are placed.
 */
import { crc32c } from "@node-rs/crc32";
import { partitionOf } from "../cluster/placement.js";
import { initHash } from "../hash.js";
import { ClusterView, type Readiness } from "./cluster-view.js";
import type { PiccoloClient } from "../client/client.js";
import { ErrorCode, PiccoloError } from "../errors.js";
import type { Caller, NodeLink } from "./pool.js";
import { Problem } from "./problems.js";

export { CLUSTER_MAP_REFRESH_MS } from "./cluster-view.js";

export class Router {
  private readonly fixed: readonly NodeLink[];
  private readonly view: ClusterView | null;

  constructor(
    nodes: readonly NodeLink[],
    /** The nodes are members (seeds) of one cluster: any of them serves any key. */
    readonly cluster = false,
    /** Cluster mode: a link to a member learned from the cluster. */
    newLink?: (host: string, port: number) => NodeLink,
  ) {
    if (nodes.length === 0) throw new Error("the gateway needs at least one node");
    this.fixed = nodes;
    this.view = cluster ? new ClusterView([...nodes], newLink ?? missingFactory) : null;
  }

  /** The nodes the gateway talks to now (in a cluster, the members it has learned). */
  get nodes(): readonly NodeLink[] {
    return this.view?.links ?? this.fixed;
  }

  /** Cluster mode: learns the cluster now and keeps it fresh. */
  async start(): Promise<void> {
    if (this.view === null) return;
    await initHash();
    await this.view.start();
  }

  stop(): void {
    this.view?.stop();
  }

  /** The node that serves `key`. */
  nodeFor(key: Uint8Array): NodeLink {
    const nodes = this.nodes;
    if (nodes.length === 1) return nodes[0]!;
    const leaders = this.view?.leaders ?? [];
    if (leaders.length > 0) {
      const leader = leaders[partitionOf(key, leaders.length)];
      if (leader?.up) return leader;
    }
    const buf = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
    let best: NodeLink | null = null;
    let bestScore = -1;
    for (const n of nodes) {
      if (this.view !== null && !n.up) continue;
      const score = crc32c(buf, seedOf(n));
      if (score > bestScore) {
        best = n;
        bestScore = score;
      }
    }
    return best ?? nodes[0]!;
  }

  /**
   * Runs `f` for `key` on the node that serves it (pool.ts, NodeLink.run).
   * In a cluster, a request that member certainly did not carry out (it is
   * stopping: SHUTTING_DOWN; it is down or the request never left: an
   * unsent CONNECTION_CLOSED or node-unavailable; NOT_LEADER) is sent to
   * each other member that is up, once: any member serves any key, and
   * nothing can be applied twice. So a member's graceful restart costs the
   * gateway's callers nothing but latency. Anything else (a timeout, a
   * connection lost with the request on it) is answered as it is.
   */
  async runForKey<T>(key: Uint8Array, as: Caller, f: (c: PiccoloClient) => Promise<T>): Promise<T> {
    const first = this.nodeFor(key);
    try {
      return await first.run(as, f);
    } catch (err) {
      if (this.view === null || !notCarriedOut(err)) throw err;
      let last = err;
      for (const other of this.nodes) {
        if (other === first || !other.up) continue;
        try {
          return await other.run(as, f);
        } catch (e) {
          if (!notCarriedOut(e)) throw e;
          last = e;
        }
      }
      throw last;
    }
  }

  /** Any node that is up, for a request without a key (in a cluster any member serves it). */
  anyNode(): NodeLink {
    const nodes = this.nodes;
    return this.view === null ? nodes[0]! : (nodes.find((n) => n.up) ?? nodes[0]!);
  }

  /** Listings: node indexes run from 0 to listEnd() (exclusive); a cluster is listed through one member. */
  listEnd(): number {
    return this.view === null ? this.fixed.length : 1;
  }

  /** The node that lists index `i`: the i-th node, or in a cluster a member that is up. */
  listNode(i: number): NodeLink {
    return this.view === null ? this.fixed[i]! : this.anyNode();
  }

  /**
   * /readyz: without --cluster, every node must be up (each owns keys no other
   * serves); in a cluster, cluster-view.ts decides.
   */
  readiness(): Readiness {
    if (this.view !== null) return this.view.readiness();
    const members = this.fixed.map((n) => ({ node: n.address, member: 0, up: n.up, answered: n.up }));
    const down = this.fixed.filter((n) => !n.up).length;
    return down === 0
      ? { ready: true, members, partitions: 0, withoutLeader: [] }
      : {
          ready: false,
          reason: `${down} of ${this.fixed.length} nodes are unreachable`,
          members,
          partitions: 0,
          withoutLeader: [],
        };
  }
}

/** Each node's rendezvous seed, the hash of its address (computed once per link). */
const seeds = new WeakMap<NodeLink, number>();
function seedOf(n: NodeLink): number {
  let s = seeds.get(n);
  if (s === undefined) seeds.set(n, (s = crc32c(n.address)));
  return s;
}

function missingFactory(): NodeLink {
  throw new Error("a cluster router needs a link factory to reach members it learns");
}

/** An error after which the request was certainly not carried out (runForKey). */
function notCarriedOut(err: unknown): boolean {
  if (err instanceof Problem) return err.type === "node-unavailable";
  return (
    err instanceof PiccoloError &&
    (err.code === ErrorCode.SHUTTING_DOWN ||
      err.code === ErrorCode.NOT_LEADER ||
      (err.code === ErrorCode.CONNECTION_CLOSED && err.unsent))
  );
}
