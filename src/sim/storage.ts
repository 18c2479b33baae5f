/**
 * A group host's disk in the cluster simulator: the HostStorage
 * (src/cluster/group-host.ts) the node backs with its WAL, here memory with
 * the WAL's semantics (MemoryStorage, src/cluster/multi-raft.ts) behind a
 * simulated device:
 *
 *   - every write takes time: usually a fraction of a millisecond to a few
 *     milliseconds, sometimes tens (a slow fsync), and completes in order;
 *     meanwhile the host keeps receiving and clients keep proposing, as in
 *     the node, which awaits its WAL;
 *   - a crash (kill -9) during a write keeps a random prefix of it (the
 *     WAL's torn tail, truncated on recovery) and loses the rest; the
 *     writes of a dead process never complete.
 *
 * What survives is what a restarted member's host recovers (openStorage).
 */
import type { HostDeps, HostStorage } from "../cluster/group-host.js";
import { type GroupPersist, type GroupState, MemoryStorage } from "../cluster/multi-raft.js";
import type { Snapshot } from "../raft/types.js";
import type { Prng } from "./prng.js";
import type { SimClock } from "./time.js";

interface PendingWrite {
  /** The round to persist, or a compaction snapshot. */
  round: GroupPersist[] | null;
  compaction: { group: number; snapshot: Snapshot } | null;
  resolve: () => void;
}

export class SimDiskStorage {
  readonly mem = new MemoryStorage();
  /** Writes that took a slow path (for the run's counts). */
  slowWrites = 0;
  tornWrites = 0;
  private pending: PendingWrite[] = [];
  /** Bumped at each crash: an older incarnation's storage does nothing any more. */
  private incarnation = 0;

  constructor(private readonly rng: Prng) {}

  /** A write is in flight (a crash now tears it). */
  get writing(): boolean {
    return this.pending.length > 0;
  }

  /** The openStorage of a new incarnation of the member, whose clock is `clock`. */
  opener(clock: SimClock): HostDeps["openStorage"] {
    const mine = ++this.incarnation;
    this.pending = [];
    return async () => {
      const groups = new Map<number, GroupState>();
      for (const g of this.mem.state.keys()) groups.set(g, this.mem.restore(g)!);
      const storage: HostStorage = {
        persist: (round) => this.write(mine, clock, { round, compaction: null }),
        saveCompaction: (group, snapshot) => this.write(mine, clock, { round: null, compaction: { group, snapshot } }),
        close: async () => {},
      };
      return { storage, groups };
    };
  }

  /** The process died: of the write in flight, a prefix of its groups reached the disk; the rest is lost. */
  crash(): void {
    const w = this.pending[0];
    if (w !== undefined && w.round !== null && w.round.length > 0) {
      const keep = this.rng.int(w.round.length + 1);
      if (keep < w.round.length) this.tornWrites++;
      void this.mem.persist(w.round.slice(0, keep));
    }
    this.pending = [];
    this.incarnation++;
  }

  private write(
    mine: number,
    clock: SimClock,
    w: { round: GroupPersist[] | null; compaction: { group: number; snapshot: Snapshot } | null },
  ): Promise<void> {
    // A dead incarnation's host may still be finishing a reaction: its write never completes.
    if (mine !== this.incarnation) return new Promise(() => {});
    return new Promise((resolve) => {
      const write: PendingWrite = { ...w, resolve };
      this.pending.push(write);
      const slow = this.rng.chance(0.05);
      if (slow) this.slowWrites++;
      const ms = slow ? 5 + this.rng.next() * 40 : 0.05 + this.rng.next() * 2;
      clock.event(ms, () => this.complete(mine, write));
    });
  }

  /** Writes complete in order: this one, and nothing before it is still pending. */
  private complete(mine: number, write: PendingWrite): void {
    if (mine !== this.incarnation) return;
    while (this.pending.length > 0) {
      const w = this.pending[0]!;
      if (w !== write && this.pending.indexOf(write) < 0) return;
      this.pending.shift();
      if (w.round !== null) void this.mem.persist(w.round);
      if (w.compaction !== null) void this.mem.saveCompaction(w.compaction.group, w.compaction.snapshot);
      w.resolve();
      if (w === write) return;
    }
  }
}
