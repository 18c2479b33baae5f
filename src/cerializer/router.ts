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
 * When the nodes form a cluster (issue #7) this is where the partition map
 * plugs in: key -> partition -> the partition's leader, refreshed on a
 * NOT_LEADER answer. Nothing else in the gateway knows how keys are placed.
 */
import { crc32c } from "@node-rs/crc32";
import type { NodeLink } from "./pool.js";

export class Router {
  private readonly seeds: number[];

  constructor(readonly nodes: readonly NodeLink[]) {
    if (nodes.length === 0) throw new Error("the gateway needs at least one node");
    this.seeds = nodes.map((n) => crc32c(n.address));
  }

  /** The node that owns `key`. */
  nodeFor(key: Uint8Array): NodeLink {
    if (this.nodes.length === 1) return this.nodes[0]!;
    let best = 0;
    let bestScore = -1;
    const buf = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
    for (let i = 0; i < this.nodes.length; i++) {
      const score = crc32c(buf, this.seeds[i]!);
      if (score > bestScore) {
        bestScore = score;
        best = i;
      }
    }
    return this.nodes[best]!;
  }
}
