/**
 * A simulated disk for one replica: what survives a crash. The host writes a
 * Ready's records in order (snapshot, entries, hard state), then "fsyncs";
 * only then may it send messages (the persistence contract, docs/raft.md).
 *
 * A crash can strike between the write and the fsync. Then a random prefix
 * of the records survives, the rest is lost, and no message of that Ready
 * was sent: this is what a torn write at the end of a WAL looks like after
 * recovery (src/wal truncates the torn tail). The simulator uses it to check
 * that the core never relies on state it has not seen made durable.
 */
import type { Ready } from "../raft/messages.js";
import type { Entry, HardState, Snapshot } from "../raft/types.js";

export class SimDisk {
  snapshot: Snapshot | null = null;
  hardState: HardState = { term: 0, vote: 0, commit: 0 };
  /** Entries after the snapshot, contiguous. */
  entries: Entry[] = [];

  /** Number of records `persist` would write for this Ready. */
  static records(rd: Ready): number {
    return (rd.snapshot !== null ? 1 : 0) + rd.entries.length + (rd.hardState !== null ? 1 : 0);
  }

  /** Writes the Ready's records in order; only the first `keep` survive (all by default). */
  persist(rd: Ready, keep = Number.POSITIVE_INFINITY): void {
    let left = keep;
    if (rd.snapshot !== null) {
      if (left-- <= 0) return;
      this.snapshot = rd.snapshot;
      this.entries = []; // a received snapshot replaces the whole log
    }
    if (rd.entries.length > 0 && left > 0) {
      // New entries replace any stored from the first one's index on.
      const first = rd.entries[0]!.index;
      const base = this.entries.length > 0 ? this.entries[0]!.index : first;
      this.entries.length = Math.max(0, Math.min(this.entries.length, first - base));
      for (const e of rd.entries) {
        if (left-- <= 0) return;
        this.entries.push(e);
      }
    }
    if (rd.hardState !== null) {
      if (left-- <= 0) return;
      this.hardState = rd.hardState;
    }
  }

  /** The host compacted its log behind its own snapshot. */
  compact(snap: Snapshot): void {
    this.snapshot = snap;
    this.entries = this.entries.filter((e) => e.index > snap.meta.index);
  }

  restore(): { snapshot: Snapshot | null; hardState: HardState; entries: Entry[] } {
    return { snapshot: this.snapshot, hardState: this.hardState, entries: [...this.entries] };
  }
}
