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
 * Routing straight to each partition's leader (a cluster-info operation,
 * refreshed on NOT_LEADER) would save the forwarding hop; it plugs in here.
 * Nothing else in the gateway knows how keys are placed.
 */
import { crc32c } from "@node-rs/crc32";
import type { NodeLink } from "./pool.js";

export class Router {
  private readonly seeds: number[];

  constructor(
    readonly nodes: readonly NodeLink[],
    /** The nodes are members of one cluster (any of them serves any key). */
    readonly cluster = false,
  ) {
    if (nodes.length === 0) throw new Error("the gateway needs at least one node");
    this.seeds = nodes.map((n) => crc32c(n.address));
  }

  /** The node that serves `key`. */
  nodeFor(key: Uint8Array): NodeLink {
    if (this.nodes.length === 1) return this.nodes[0]!;
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
    return i < 0 ? 0 : i;
  }

  /** The node a listing goes on to once node `i` is done (nodes.length: the end). */
  nextListNode(i: number): number {
    return this.cluster ? this.nodes.length : i + 1;
  }
}
