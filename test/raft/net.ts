// A hand-driven network for story tests of the Raft core: messages are
// delivered only when the story says so, so each step is visible. The state
// machine is the list of applied commands; its snapshot is that list as JSON.
import assert from "node:assert/strict";
import type { Message } from "../../src/raft/messages.js";
import { Role } from "../../src/raft/messages.js";
import { Raft, type RaftConfig } from "../../src/raft/raft.js";
import { EntryType } from "../../src/raft/types.js";

export const enc = new TextEncoder();
export const dec = new TextDecoder();

/** A group of replicas and the messages between them. */
export class Net {
  readonly nodes = new Map<number, Raft>();
  readonly applied = new Map<number, string[]>();
  readonly down = new Set<number>();
  readonly reads: { node: number; index: number; context: number }[] = [];
  /** Every message delivered, for stories that check what was said. */
  readonly delivered: Message[] = [];
  pending: Message[] = [];
  /** When set, a message it returns true for is lost on the way. */
  lose: ((m: Message) => boolean) | null = null;

  constructor(size: number, extra: Partial<RaftConfig> = {}) {
    const peers = Array.from({ length: size }, (_, i) => i + 1);
    for (const id of peers) {
      // Deterministic, distinct timeouts: node 1 times out first.
      this.nodes.set(id, new Raft({ id, peers, rand: () => (id - 1) / size, ...extra }));
      this.applied.set(id, []);
    }
  }

  /** A replica joining the group later: no bootstrap list, it learns the members from the leader. */
  join(id: number): Raft {
    const r = new Raft({ id, peers: [], rand: () => 0.5 });
    this.nodes.set(id, r);
    this.applied.set(id, []);
    return r;
  }

  node(id: number): Raft {
    return this.nodes.get(id)!;
  }

  /** Collects every replica's Ready (persist is implicit), queueing its messages. */
  collect(): void {
    for (const [id, r] of this.nodes) {
      while (r.hasReady()) {
        const rd = r.ready();
        for (const m of rd.messages) this.pending.push(m);
        if (rd.snapshot !== null) this.applied.set(id, JSON.parse(dec.decode(rd.snapshot.data)) as string[]);
        for (const e of rd.committedEntries)
          if (e.type === EntryType.Normal) this.applied.get(id)!.push(dec.decode(e.data));
        for (const rs of rd.readStates) this.reads.push({ node: id, ...rs });
        r.advance(rd);
      }
    }
  }

  /** Snapshots replica `id`'s state machine at its applied index and compacts its log there. */
  compact(id: number): number {
    this.collect();
    const r = this.node(id);
    const index = r.log.applied;
    r.compact(index, enc.encode(JSON.stringify(this.applied.get(id))));
    return index;
  }

  /** Delivers messages until none are left; messages to or from a down replica are lost. */
  settle(limit = 10_000): void {
    this.collect();
    for (let n = 0; this.pending.length > 0; n++) {
      assert.ok(n < limit, "the network settles");
      const batch = this.pending;
      this.pending = [];
      for (const m of batch)
        if (!this.down.has(m.to) && !this.down.has(m.from) && this.nodes.has(m.to) && !this.lose?.(m)) {
          this.delivered.push(m);
          this.node(m.to).step(m);
        }
      this.collect();
    }
  }

  tick(id: number, times = 1): void {
    for (let i = 0; i < times; i++) this.node(id).tick();
  }

  tickAll(times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const [id, r] of this.nodes) if (!this.down.has(id)) r.tick();
      this.settle();
    }
  }

  /**
   * Lets an election timeout pass for these replicas without any message:
   * they stop considering the old leader alive (its lease, as they see it,
   * expires), so they will listen to a candidate.
   */
  expireLease(...ids: number[]): void {
    for (const id of ids) this.tick(id, 10);
    this.collect();
    this.pending = [];
  }

  elect(id: number): void {
    this.node(id).campaign();
    this.settle();
    assert.equal(this.node(id).role, Role.Leader, `node ${id} won`);
  }

  leaders(): number[] {
    return [...this.nodes].filter(([id, r]) => r.role === Role.Leader && !this.down.has(id)).map(([id]) => id);
  }
}
