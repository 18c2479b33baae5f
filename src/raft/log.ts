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

/**
 * Entry data of at most this many bytes is copied into the log's shared
 * chunks; larger data keeps the array it came in (as every entry's did
 * before decision 0108). A quarter of a full chunk: a chunk's unused tail
 * is at most that.
 */
const SHARED_MAX_BYTES = 16 * 1024;
/**
 * Shared chunks of entry data: the first of a log is 4 KiB and each next
 * one twice the last, up to 64 KiB, so a partition that sees a few writes
 * holds a few KiB (a member has 64 of them) and a busy one 64 KiB chunks.
 */
const FIRST_CHUNK_BYTES = 4 * 1024;
const CHUNK_BYTES = 64 * 1024;
/** In `chunkIds`: the entry's data is its own array, in `own`. */
const OWN = 0xffffffff;
/** The columns' first capacity, in entries. */
const INITIAL_ENTRIES = 64;

export class RaftLog {
  /*
   * The entries, in columns (decision 0108): entry `offset + i` is at
   * position `head + i` of each column, i < count. An entry object with a
   * Uint8Array of its own cost ~650 bytes of RSS for a 128-byte command (the
   * object, the typed array, its ArrayBuffer and the malloc'd backing store
   * with its bookkeeping); here it costs 21 bytes of columns plus its data,
   * padded to 8, in a shared 64 KiB chunk. Entry objects are made when read
   * (entry(), slice(), unstableEntries(), nextCommitted()), their data a
   * view into the chunk: short-lived garbage, where the log was long-lived.
   *
   * The bytes of a chunk are never written twice: a truncated tail's bytes
   * are left behind, not reused, so a view handed out stays what it was
   * (a Ready's entries may still be on their way to disk when a conflicting
   * append truncates them). Chunks are dropped from the front once every
   * entry in them is compacted.
   */
  private head = 0;
  private count = 0;
  private terms = new Float64Array(INITIAL_ENTRIES);
  private types = new Uint8Array(INITIAL_ENTRIES);
  /** The chunk holding the entry's data (chunks[id - chunkBase]), or OWN. */
  private chunkIds = new Uint32Array(INITIAL_ENTRIES);
  private dataAt = new Uint32Array(INITIAL_ENTRIES);
  private dataBytes = new Uint32Array(INITIAL_ENTRIES);
  /** Data of entries over SHARED_MAX_BYTES, by index, in index order. */
  private readonly own = new Map<number, Uint8Array>();
  /** chunks[k] has id chunkBase + k; the last one is filled up to chunkUsed. */
  private chunks: Uint8Array[] = [];
  private chunkBase = 0;
  private chunkUsed = 0;
  /** The size of the next chunk. */
  private nextChunkBytes = FIRST_CHUNK_BYTES;
  /** Entry `offset + i` is the log's i-th. */
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
  /** Indexes of the ConfChange entries in the log, ascending. */
  private confIndexes: number[] = [];

  constructor(base: SnapshotMeta, entries: Entry[] = [], committed = base.index) {
    this.prevIndex = base.index;
    this.prevTerm = base.term;
    this.baseConfig = { voters: base.voters, learners: base.learners };
    this.offset = base.index + 1;
    for (const [i, e] of entries.entries()) assert(e.index === this.offset + i, "restored entries are contiguous");
    this.push(entries);
    this.committed = Math.max(committed, base.index);
    this.applied = base.index;
    this.stable = this.lastIndex();
    assert(this.committed <= this.lastIndex(), "restored commit index within the log");
  }

  /** Adds entries at the end (their indexes follow lastIndex()). */
  private push(entries: readonly Entry[]): void {
    for (const e of entries) {
      if (this.head + this.count === this.terms.length) this.makeRoom();
      const at = this.head + this.count;
      this.terms[at] = e.term;
      this.types[at] = e.type;
      this.dataBytes[at] = e.data.length;
      if (e.data.length > SHARED_MAX_BYTES || e.data.length === 0) {
        // Large, or empty (a new leader's no-op): kept as it came, nothing to copy.
        this.chunkIds[at] = OWN;
        this.own.set(e.index, e.data);
      } else {
        const last = this.chunks.length - 1;
        if (last < 0 || this.chunkUsed + e.data.length > this.chunks[last]!.length) {
          this.chunks.push(new Uint8Array(Math.max(this.nextChunkBytes, e.data.length)));
          this.nextChunkBytes = Math.min(2 * this.nextChunkBytes, CHUNK_BYTES);
          this.chunkUsed = 0;
        }
        this.chunkIds[at] = this.chunkBase + this.chunks.length - 1;
        this.dataAt[at] = this.chunkUsed;
        this.chunks[this.chunks.length - 1]!.set(e.data, this.chunkUsed);
        this.chunkUsed += (e.data.length + 7) & ~7;
      }
      this.count++;
      if (e.type === EntryType.ConfChange) this.confIndexes.push(e.index);
    }
  }

  /** The columns are full at the end: move the entries to the front, or double them. */
  private makeRoom(): void {
    const n = this.count;
    const size = n < this.terms.length / 2 ? this.terms.length : this.terms.length * 2;
    // Each column: moved down in place when there is room at the front, else copied into one twice as long.
    const move = <T extends Float64Array | Uint8Array | Uint32Array>(a: T, make: (length: number) => T): T => {
      if (size === a.length) {
        a.copyWithin(0, this.head, this.head + n);
        return a;
      }
      const grown = make(size);
      grown.set(a.subarray(this.head, this.head + n));
      return grown;
    };
    this.terms = move(this.terms, (k) => new Float64Array(k));
    this.types = move(this.types, (k) => new Uint8Array(k));
    this.chunkIds = move(this.chunkIds, (k) => new Uint32Array(k));
    this.dataAt = move(this.dataAt, (k) => new Uint32Array(k));
    this.dataBytes = move(this.dataBytes, (k) => new Uint32Array(k));
    this.head = 0;
  }

  /** Drops the log's first `n` entries, and the chunks only they used. */
  private dropFront(n: number): void {
    for (let i = 0; i < n; i++) {
      const at = this.head + i;
      if (this.chunkIds[at] === OWN) this.own.delete(this.offset + i);
    }
    this.head += n;
    this.count -= n;
    this.offset += n;
    // The first chunk still in use: the first remaining entry's with shared data, else none but the last
    // (the one being filled).
    let keep = this.chunkBase + Math.max(0, this.chunks.length - 1);
    for (let i = 0; i < this.count; i++) {
      const id = this.chunkIds[this.head + i]!;
      if (id !== OWN) {
        keep = id;
        break;
      }
    }
    if (keep > this.chunkBase) {
      this.chunks.splice(0, keep - this.chunkBase);
      this.chunkBase = keep;
    }
    if (this.count === 0) this.head = 0;
  }

  /** Drops the entries from index `from` on; their bytes in a chunk are left behind, never reused. */
  private dropBack(from: number): void {
    for (let index = from; index <= this.lastIndex(); index++)
      if (this.chunkIds[this.head + index - this.offset] === OWN) this.own.delete(index);
    this.count = from - this.offset;
  }

  /** The entry at position `i` of the log (index offset + i), made now: its data a view into the log's bytes. */
  private at(i: number): Entry {
    const at = this.head + i;
    const index = this.offset + i;
    const id = this.chunkIds[at]!;
    let data: Uint8Array;
    if (id === OWN) data = this.own.get(index)!;
    else {
      const from = this.dataAt[at]!;
      data = this.chunks[id - this.chunkBase]!.subarray(from, from + this.dataBytes[at]!);
    }
    return { index, term: this.terms[at]!, type: this.types[at]! as EntryType, data };
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
      if (at <= index) return decodeConfig(this.at(at - this.offset).data);
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
    this.dropFront(Math.min(index + 1 - this.offset, this.count));
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
    this.head = 0;
    this.count = 0;
    this.own.clear();
    this.chunkBase += this.chunks.length;
    this.chunks = [];
    this.chunkUsed = 0;
    this.nextChunkBytes = FIRST_CHUNK_BYTES;
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
    return this.offset + this.count - 1;
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  /** Term of the entry at `index`, or -1 when unknown (compacted away or beyond the end). */
  term(index: number): number {
    if (index === this.prevIndex) return this.prevTerm;
    if (index < this.offset || index > this.lastIndex()) return -1;
    return this.terms[this.head + index - this.offset]!;
  }

  entry(index: number): Entry {
    assert(index >= this.offset && index <= this.lastIndex(), "entry index within the log");
    return this.at(index - this.offset);
  }

  /** Entries in [lo, hi], at most maxBytes of data (but at least one). */
  slice(lo: number, hi: number, maxBytes = Number.POSITIVE_INFINITY): Entry[] {
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = Math.max(lo, this.offset); i <= Math.min(hi, this.lastIndex()); i++) {
      bytes += this.dataBytes[this.head + i - this.offset]!;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(this.at(i - this.offset));
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
    this.dropBack(first);
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
    return this.slice(this.stable + 1, this.lastIndex());
  }

  /** Whether unstableEntries() has any (without making them). */
  hasUnstable(): boolean {
    return this.lastIndex() > Math.max(this.stable, this.offset - 1);
  }

  /** Committed, durable and not yet applied: safe for the host to apply. */
  nextCommitted(maxBytes: number): Entry[] {
    if (this.applied < this.prevIndex) return []; // a received snapshot is not installed yet
    const hi = Math.min(this.committed, this.stable);
    return hi > this.applied ? this.slice(this.applied + 1, hi, maxBytes) : [];
  }

  /** Whether nextCommitted() has any (without making them). */
  hasNextCommitted(): boolean {
    return this.applied >= this.prevIndex && Math.min(this.committed, this.stable) > this.applied;
  }

  stableTo(index: number): void {
    if (index > this.stable && index <= this.lastIndex()) this.stable = index;
  }
}
