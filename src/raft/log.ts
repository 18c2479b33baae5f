/**
 * A replica's log, as the core sees it: entries from `firstIndex` on (the
 * ones before are in a snapshot, represented by its index and term), the
 * commit and apply points, and how far the host has made the log durable.
 *
 * Invariants (asserted): applied <= committed <= lastIndex; committed never
 * decreases; an entry at or below `committed` is never overwritten.
 */
import { assert } from "../assert.js";
import type { Entry } from "./types.js";

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

  constructor(snapshotIndex = 0, snapshotTerm = 0, entries: Entry[] = [], committed = snapshotIndex) {
    this.prevIndex = snapshotIndex;
    this.prevTerm = snapshotTerm;
    this.offset = snapshotIndex + 1;
    for (const [i, e] of entries.entries()) assert(e.index === this.offset + i, "restored entries are contiguous");
    this.entries = [...entries];
    this.committed = committed;
    this.applied = snapshotIndex;
    this.stable = this.lastIndex();
    assert(committed <= this.lastIndex(), "restored commit index within the log");
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
    this.entries.push(...entries);
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
    this.applied = index;
  }

  unstableEntries(): Entry[] {
    return this.entries.slice(this.stable + 1 - this.offset);
  }

  /** Committed, durable and not yet applied: safe for the host to apply. */
  nextCommitted(maxBytes: number): Entry[] {
    const hi = Math.min(this.committed, this.stable);
    return hi > this.applied ? this.slice(this.applied + 1, hi, maxBytes) : [];
  }

  stableTo(index: number): void {
    if (index > this.stable && index <= this.lastIndex()) this.stable = index;
  }
}
