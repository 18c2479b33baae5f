/**
 * A replica's log, as the core sees it: entries from `firstIndex` on (the
 * ones before are in a snapshot, represented by its index and term), the
 * commit and apply points, and how far the host has made the log durable.
 * It also knows the group's configuration, since that is a function of the
 * log (src/raft/config.ts): the newest ConfChange entry, else the
 * configuration as of the snapshot.
 *
 * Invariants (asserted): applied <= committed <= lastIndex; committed never
 * decreases; an entry at or below `committed` is never overwritten.
 */
import { assert } from "../assert.js";
import { type Config, decodeConfig } from "./config.js";
import { type Entry, EntryType, type SnapshotMeta } from "./types.js";

export class RaftLog {
  /** entries[i] has index offset + i. */
  private entries: Entry[] = [];
  private offset: number;
  /** The entry just before `offset` (a snapshot's last entry, or the zero entry). */
  private prevIndex: number;
  private prevTerm: number;
  committed: number;
  applied: number;
  /** Entries up to here are durable (the host persisted them and called advance()). */
  stable: number;
  /** The configuration as of prevIndex (the snapshot's, or the bootstrap list). */
  private baseConfig: Config;
  /** Indexes of the ConfChange entries in `entries`, ascending. */
  private confIndexes: number[] = [];

  constructor(base: SnapshotMeta, entries: Entry[] = [], committed = base.index) {
    this.prevIndex = base.index;
    this.prevTerm = base.term;
    this.baseConfig = { voters: base.voters, learners: base.learners };
    this.offset = base.index + 1;
    for (const [i, e] of entries.entries()) assert(e.index === this.offset + i, "restored entries are contiguous");
    this.entries = [];
    this.push(entries);
    this.committed = Math.max(committed, base.index);
    this.applied = base.index;
    this.stable = this.lastIndex();
    assert(this.committed <= this.lastIndex(), "restored commit index within the log");
  }

  private push(entries: Entry[]): void {
    for (const e of entries) {
      this.entries.push(e);
      if (e.type === EntryType.ConfChange) this.confIndexes.push(e.index);
    }
  }

  /** Index and term of the entry just before the first one kept (the snapshot's last entry). */
  snapshotIndex(): number {
    return this.prevIndex;
  }

  /** The configuration in force: the newest ConfChange entry in the log, else the base one. */
  config(): Config {
    return this.configAt(this.lastIndex());
  }

  /** The configuration as of `index` (for a snapshot's metadata). */
  configAt(index: number): Config {
    assert(index >= this.prevIndex, "configurations are known from the snapshot on");
    for (let i = this.confIndexes.length - 1; i >= 0; i--) {
      const at = this.confIndexes[i]!;
      if (at <= index) return decodeConfig(this.entries[at - this.offset]!.data);
    }
    return this.baseConfig;
  }

  /** Index of the newest ConfChange entry (0 when none is in the log). */
  lastConfIndex(): number {
    return this.confIndexes.length > 0 ? this.confIndexes[this.confIndexes.length - 1]! : 0;
  }

  /**
   * Drops the entries up to `index`, which the host has captured in a
   * snapshot of its state machine. Only applied entries can be compacted:
   * the snapshot is of applied state.
   */
  compact(index: number): void {
    assert(index <= this.applied, "only applied entries are compacted");
    if (index <= this.prevIndex) return;
    const term = this.term(index);
    this.baseConfig = this.configAt(index);
    this.entries = this.entries.slice(index + 1 - this.offset);
    this.confIndexes = this.confIndexes.filter((i) => i > index);
    this.prevIndex = index;
    this.prevTerm = term;
    this.offset = index + 1;
  }

  /**
   * Replaces the whole log with a snapshot received from the leader (the
   * follower's log did not contain the snapshot's last entry). The state
   * machine is restored by the host; until it has (advance()), nothing from
   * the old log may be applied, so `applied` is left behind and
   * nextCommitted() returns nothing.
   */
  restore(meta: SnapshotMeta): void {
    assert(meta.index > this.committed, "a snapshot never rolls back committed entries");
    this.entries = [];
    this.confIndexes = [];
    this.prevIndex = meta.index;
    this.prevTerm = meta.term;
    this.baseConfig = { voters: meta.voters, learners: meta.learners };
    this.offset = meta.index + 1;
    this.committed = meta.index;
    this.stable = meta.index;
  }

  /** The host installed a snapshot in its state machine (see restore()). */
  snapshotApplied(index: number): void {
    if (index > this.applied) this.applied = index;
  }

  firstIndex(): number {
    return this.offset;
  }

  lastIndex(): number {
    return this.offset + this.entries.length - 1;
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  /** Term of the entry at `index`, or -1 when unknown (compacted away or beyond the end). */
  term(index: number): number {
    if (index === this.prevIndex) return this.prevTerm;
    if (index < this.offset || index > this.lastIndex()) return -1;
    return this.entries[index - this.offset]!.term;
  }

  entry(index: number): Entry {
    assert(index >= this.offset && index <= this.lastIndex(), "entry index within the log");
    return this.entries[index - this.offset]!;
  }

  /** Entries in [lo, hi], at most maxBytes of data (but at least one). */
  slice(lo: number, hi: number, maxBytes = Number.POSITIVE_INFINITY): Entry[] {
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = Math.max(lo, this.offset); i <= Math.min(hi, this.lastIndex()); i++) {
      const e = this.entries[i - this.offset]!;
      bytes += e.data.length;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** Candidate up-to-dateness (Raft §5.4.1): is (lastTerm, lastIndex) at least as new as ours? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    return lastTerm > this.lastTerm() || (lastTerm === this.lastTerm() && lastIndex >= this.lastIndex());
  }

  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    assert(first > this.committed, "committed entries are never overwritten");
    assert(first <= this.lastIndex() + 1, "appended entries follow the log without a gap");
    this.entries.length = first - this.offset;
    while (this.confIndexes.length > 0 && this.confIndexes[this.confIndexes.length - 1]! >= first)
      this.confIndexes.pop();
    this.push(entries);
    if (this.stable >= first) this.stable = first - 1;
  }

  /**
   * A follower's append after (prevIndex, prevTerm): skips entries it already
   * has, truncates at the first conflict, appends the rest. Returns the index
   * of the last entry the message vouched for, or -1 when prev does not match.
   */
  maybeAppend(prevIndex: number, prevTerm: number, entries: Entry[]): number {
    if (!this.matchTerm(prevIndex, prevTerm)) return -1;
    let i = 0;
    while (i < entries.length && this.term(entries[i]!.index) === entries[i]!.term) i++;
    if (i < entries.length) this.append(entries.slice(i));
    return prevIndex + entries.length;
  }

  /** The largest index <= `index` whose term is <= `term` (for fast back-off on conflicts). */
  findConflictByTerm(index: number, term: number): number {
    let i = Math.min(index, this.lastIndex());
    while (i > this.prevIndex && this.term(i) > term) i--;
    return i;
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), "commit index within the log");
    this.committed = index;
  }

  appliedTo(index: number): void {
    assert(index >= this.applied && index <= this.committed, "applied moves forward, never past committed");
    // Entries below the snapshot's index may still be applied when the
    // snapshot arrived while the host was handling the Ready that carried
    // them (a host that awaits its disk keeps receiving); the snapshot, not
    // yet installed, replaces them next. Never after it is installed.
    assert(
      index >= this.prevIndex || this.applied < this.prevIndex,
      "entries before a snapshot are not applied once the snapshot is installed",
    );
    this.applied = index;
  }

  unstableEntries(): Entry[] {
    return this.entries.slice(Math.max(0, this.stable + 1 - this.offset));
  }

  /** Committed, durable and not yet applied: safe for the host to apply. */
  nextCommitted(maxBytes: number): Entry[] {
    if (this.applied < this.prevIndex) return []; // a received snapshot is not installed yet
    const hi = Math.min(this.committed, this.stable);
    return hi > this.applied ? this.slice(this.applied + 1, hi, maxBytes) : [];
  }

  stableTo(index: number): void {
    if (index > this.stable && index <= this.lastIndex()) this.stable = index;
  }
}
