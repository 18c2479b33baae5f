/**
 * Which node serves a key: the one place the gateway decides it.
 *
 * Today the nodes given with --nodes are independent stores, and the
 * gateway spreads keys over them by rendezvous (highest-random-weight)
 * hashing: each node scores hash(node, key) and the highest wins. Adding or
 * removing a node moves only the keys that node wins or held, and every
 * gateway with the same node list agrees without talking to the others.
 * With one node (the default) every key goes to it.
 *
 * With --cluster, the nodes are members of one Piccolo cluster (issue #7):
 * every member serves every key (it forwards to the partition's leader), so
 * the same rendezvous order only spreads load, and a key whose first choice
 * is marked down (after the first request that finds it dead) goes to the
 * next member that is up. A listing walks one member, since each
 * member lists the whole keyspace.
 *
 * Better still, in a cluster the router learns the partition map: every
 * CLUSTER_MAP_REFRESH_MS it asks each member for its cluster info (which
 * member it is, each partition's leader) and then sends a key straight to
 * its partition's leader, saving the forwarding hop. A stale map costs only
 * that hop (members forward), so it is refreshed on a timer, not on errors.
 * Nothing else in the gateway knows how keys are placed.
 */
import { crc32c } from "@node-rs/crc32";
import { partitionOf } from "../cluster/placement.js";
import { initHash } from "../hash.js";
import type { NodeLink } from "./pool.js";

/** How often a cluster gateway refreshes its partition map. */
export const CLUSTER_MAP_REFRESH_MS = 1_000;

export class Router {
  private readonly seeds: number[];
  /** Cluster mode: each partition's leader, as the node link to reach it (null: unknown). */
  private leaders: (NodeLink | null)[] = [];
  private refresher: NodeJS.Timeout | null = null;

  constructor(
    readonly nodes: readonly NodeLink[],
    /** The nodes are members of one cluster (any of them serves any key). */
    readonly cluster = false,
  ) {
    if (nodes.length === 0) throw new Error("the gateway needs at least one node");
    this.seeds = nodes.map((n) => crc32c(n.address));
  }

  /** Cluster mode: learns the partition map now and keeps it fresh. */
  async start(): Promise<void> {
    if (!this.cluster) return;
    await initHash();
    await this.refresh();
    this.refresher = setInterval(() => void this.refresh(), CLUSTER_MAP_REFRESH_MS);
    this.refresher.unref();
  }

  stop(): void {
    if (this.refresher !== null) clearInterval(this.refresher);
  }

  private async refresh(): Promise<void> {
    const byMember = new Map<number, NodeLink>();
    let partitions: { leader: number }[] | null = null;
    await Promise.all(
      this.nodes.map(async (n) => {
        if (!n.up) return;
        try {
          const info = await n.run((c) => c.clusterInfo());
          byMember.set(info.self, n);
          // Any member's view of leaders will do; prefer the one with the most known.
          if (partitions === null || known(info.partitions) > known(partitions)) partitions = info.partitions;
        } catch {
          // A member that does not answer keeps its old entries until the next refresh.
        }
      }),
    );
    const ps = partitions as { leader: number }[] | null;
    if (ps !== null) this.leaders = ps.map((p) => byMember.get(p.leader) ?? null);
  }

  /** The node that serves `key`. */
  nodeFor(key: Uint8Array): NodeLink {
    if (this.nodes.length === 1) return this.nodes[0]!;
    if (this.cluster && this.leaders.length > 0) {
      const leader = this.leaders[partitionOf(key, this.leaders.length)];
      if (leader?.up) return leader;
    }
    const buf = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
    const scored = this.nodes.map((n, i) => ({ n, score: crc32c(buf, this.seeds[i]!) }));
    scored.sort((a, b) => b.score - a.score);
    if (this.cluster) return (scored.find((s) => s.n.up) ?? scored[0]!).n;
    return scored[0]!.n;
  }

  /** Where a listing starts: the first node, or in a cluster the first member that is up. */
  firstListNode(): number {
    if (!this.cluster) return 0;
    const i = this.nodes.findIndex((n) => n.up);
    return Math.max(i, 0);
  }

  /** The node a listing goes on to once node `i` is done (nodes.length: the end). */
  nextListNode(i: number): number {
    return this.cluster ? this.nodes.length : i + 1;
  }
}

function known(ps: { leader: number }[]): number {
  let n = 0;
  for (const p of ps) if (p.leader !== 0) n++;
  return n;
}
