/**
 * A shard's recent changes, in order, for watchers (docs/watch.md).
 *
 * Every change the shard makes to its map (a put, a delete, a TTL set or
 * cleared, a key that expired, a flush) is appended here with the next
 * sequence number of this shard. A watcher reads "the changes after seq N
 * whose key starts with P" (Op.WATCH); one that reads nothing new is parked
 * (held by the worker, answered when a change arrives or after
 * WATCH_PARK_MS), so a watch costs nothing while nothing changes.
 *
 * Bounded by bytes (`--watch-history-bytes` per shard): the oldest changes
 * go first. A watcher asking for changes that are gone gets COMPACTED and
 * the oldest position still kept, as etcd answers a watch on a compacted
 * revision. Values up to WATCH_VALUE_MAX_BYTES are kept with their change;
 * a larger one is not (the event says so; the watcher reads the key).
 *
 * Storage: fixed-size chunks (one allocation per chunk, none per change),
 * each with the offsets of its records, so finding seq N is a walk over
 * chunks plus an index. A record:
 *   u8 type, u8 hasValue, u16 0, u32 keyBytes, u32 valueBytes, u32 0,
 *   f64 seq, f64 version, f64 expiresAtMs, key, value
 * which is also the layout Op.WATCH answers with (a run of records).
 */
import { WATCH_VALUE_MAX_BYTES } from "../limits.js";
import { readF64, readU32, writeF64, writeU32 } from "./command.js";
import type { EffectSink } from "./execute.js";

export const ChangeType = { PUT: 1, DELETE: 2, EXPIRE: 3, EXPIRED: 4, FLUSH: 5 } as const;
export type ChangeType = (typeof ChangeType)[keyof typeof ChangeType];

export const CHANGE_HEADER_BYTES = 40;
const CHUNK_BYTES = 256 * 1024;

class Chunk {
  readonly bytes: Uint8Array;
  end = 0;
  count = 0;
  offsets = new Int32Array(1024);
  /** Each record's seq: consecutive on a single node, with gaps in a cluster (seqs follow log indexes). */
  seqs = new Float64Array(1024);

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }

  get firstSeq(): number {
    return this.seqs[0]!;
  }

  get lastSeq(): number {
    return this.seqs[this.count - 1]!;
  }

  add(at: number, seq: number): void {
    if (this.count === this.offsets.length) {
      const offsets = new Int32Array(this.offsets.length * 2);
      offsets.set(this.offsets);
      this.offsets = offsets;
      const seqs = new Float64Array(this.seqs.length * 2);
      seqs.set(this.seqs);
      this.seqs = seqs;
    }
    this.offsets[this.count] = at;
    this.seqs[this.count++] = seq;
  }

  /** The index of the first record with seq > `after` (count when none). */
  firstAfter(after: number): number {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.seqs[mid]! <= after) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** One decoded change (a view into the history's or an answer's bytes). */
export interface Change {
  type: ChangeType;
  seq: number;
  version: number;
  expiresAtMs: number;
  key: Uint8Array;
  /** null: no value (a delete), or one over WATCH_VALUE_MAX_BYTES (valueBytes says how big). */
  value: Uint8Array | null;
  valueBytes: number;
}

export class History implements EffectSink {
  private chunks: Chunk[] = [];
  private bytes = 0;
  /** The seq of the last change recorded (0: none yet). */
  lastSeq = 0;
  /** The seq of the newest change dropped to stay within the bytes (0: none): reading after it loses nothing. */
  private droppedThrough = 0;

  /** Chunk size: a quarter of the limit, at most CHUNK_BYTES (a cluster's partitions keep small histories). */
  private readonly chunkBytes: number;

  /**
   * Whether changes are kept. A single node's shards start without (a node
   * nobody watches pays nothing: no memory, no copies) and keep them from
   * the first watch read on; positions from before that are COMPACTED. A
   * cluster's partitions keep them always, so any replica can serve a
   * watcher that fails over to it.
   */
  private keeping: boolean;

  constructor(
    private readonly maxBytes: number,
    keepFromStart = true,
  ) {
    this.chunkBytes = Math.max(4096, Math.min(CHUNK_BYTES, Math.floor(maxBytes / 4)));
    this.keeping = keepFromStart;
  }

  /** Keeps changes from now on (the first watch arrived). */
  keep(): void {
    this.keeping = true;
  }

  /**
   * Starts over at `seq` with nothing kept (a replica's map replaced by a
   * snapshot: the changes before it are not known here).
   */
  resetAt(seq: number): void {
    this.chunks = [];
    this.bytes = 0;
    this.lastSeq = seq;
    this.droppedThrough = seq;
  }

  /** The oldest position a reader may resume from without missing a change. */
  get oldestSeq(): number {
    return this.droppedThrough;
  }

  /**
   * The next change's seq will be above `seq` (a cluster's partition numbers
   * the changes of log entry i from i * 65536 + 1, so positions are log
   * positions, the same on every replica).
   */
  skipTo(seq: number): void {
    if (seq > this.lastSeq) this.lastSeq = seq;
  }

  get heldBytes(): number {
    return this.bytes;
  }

  set(key: Uint8Array, value: Uint8Array, version: number, expiresAtMs: number): void {
    this.record(ChangeType.PUT, key, value, version, expiresAtMs);
  }

  del(key: Uint8Array): void {
    this.record(ChangeType.DELETE, key, null, 0, 0);
  }

  expiry(key: Uint8Array, expiresAtMs: number): void {
    this.record(ChangeType.EXPIRE, key, null, 0, expiresAtMs);
  }

  flush(): void {
    this.record(ChangeType.FLUSH, EMPTY, null, 0, 0);
  }

  /** A key removed because its TTL ran out (on access, or by the sweep). */
  expired(key: Uint8Array): void {
    this.record(ChangeType.EXPIRED, key, null, 0, 0);
  }

  private record(
    type: ChangeType,
    key: Uint8Array,
    value: Uint8Array | null,
    version: number,
    expiresAtMs: number,
  ): void {
    const seq = ++this.lastSeq;
    if (!this.keeping) {
      // Nobody has watched yet: only the numbering goes on, and everything so far counts as dropped.
      this.droppedThrough = seq;
      return;
    }
    const kept = value !== null && value.length <= WATCH_VALUE_MAX_BYTES ? value : null;
    const size = CHANGE_HEADER_BYTES + key.length + (kept?.length ?? 0);
    let chunk = this.chunks[this.chunks.length - 1];
    if (chunk === undefined || chunk.end + size > chunk.bytes.length) {
      chunk = new Chunk(Math.max(this.chunkBytes, size));
      this.chunks.push(chunk);
      this.bytes += chunk.bytes.length;
      while (this.bytes > this.maxBytes && this.chunks.length > 1) {
        const dropped = this.chunks.shift()!;
        this.bytes -= dropped.bytes.length;
        if (dropped.count > 0) this.droppedThrough = dropped.lastSeq;
      }
    }
    const b = chunk.bytes;
    const at = chunk.end;
    b[at] = type;
    b[at + 1] = kept === null ? 0 : 1;
    b[at + 2] = 0;
    b[at + 3] = 0;
    writeU32(b, at + 4, key.length);
    writeU32(b, at + 8, value?.length ?? 0);
    writeU32(b, at + 12, 0);
    writeF64(b, at + 16, seq);
    writeF64(b, at + 24, version);
    writeF64(b, at + 32, expiresAtMs);
    b.set(key, at + CHANGE_HEADER_BYTES);
    if (kept !== null) b.set(kept, at + CHANGE_HEADER_BYTES + key.length);
    chunk.end = at + size;
    chunk.add(at, seq);
  }

  /**
   * Forgets the changes after `seq`: their writes were taken back (the
   * journal failed before they were durable, or a transaction's part was
   * voided), so no watcher may see them. Nobody has: changes leave the
   * shard only in the publish that follows the journal's commit.
   */
  rollback(seq: number): void {
    if (seq >= this.lastSeq) return;
    while (this.chunks.length > 0) {
      const last = this.chunks[this.chunks.length - 1]!;
      const keep = last.firstAfter(seq);
      if (keep > 0) {
        if (keep < last.count) {
          last.end = last.offsets[keep]!;
          last.count = keep;
        }
        break;
      }
      this.bytes -= this.chunks.pop()!.bytes.length;
    }
    this.lastSeq = seq;
  }

  /**
   * Copies the changes after `after` whose key starts with `prefix` (or,
   * `exact`, equals it; a FLUSH matches every watcher) into one answer, at
   * most about `maxBytes` (at least one change), and says where to read on
   * from. Null when `after` is older than what is kept (compacted).
   */
  read(
    after: number,
    prefix: Uint8Array,
    exact: boolean,
    maxBytes: number,
  ): { bytes: Uint8Array; next: number; count: number } | null {
    if (after < this.droppedThrough) return null;
    const parts: Uint8Array[] = [];
    let size = 0;
    let next = after;
    let count = 0;
    for (const chunk of this.chunks) {
      if (chunk.count === 0 || chunk.lastSeq <= after) continue;
      for (let i = chunk.firstAfter(after); i < chunk.count; i++) {
        const at = chunk.offsets[i]!;
        const end = i + 1 < chunk.count ? chunk.offsets[i + 1]! : chunk.end;
        const rec = chunk.bytes.subarray(at, end);
        if (size + rec.length > maxBytes && count > 0) return { bytes: concat(parts, size), next, count };
        next = chunk.seqs[i]!;
        if (!matches(rec, prefix, exact)) continue;
        parts.push(rec);
        size += rec.length;
        count++;
      }
    }
    return { bytes: concat(parts, size), next: Math.max(next, this.lastSeq), count };
  }
}

function matches(rec: Uint8Array, prefix: Uint8Array, exact: boolean): boolean {
  if (rec[0] === ChangeType.FLUSH) return true;
  const kl = readU32(rec, 4);
  if (exact ? kl !== prefix.length : kl < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (rec[CHANGE_HEADER_BYTES + i] !== prefix[i]) return false;
  return true;
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const EMPTY = new Uint8Array(0);

/** Decodes a run of change records (an Op.WATCH answer); values and keys are views into `b`. */
export function decodeChanges(b: Uint8Array): Change[] {
  const out: Change[] = [];
  let at = 0;
  while (at + CHANGE_HEADER_BYTES <= b.length) {
    const kl = readU32(b, at + 4);
    const vl = readU32(b, at + 8);
    const has = b[at + 1] === 1;
    const k = at + CHANGE_HEADER_BYTES;
    out.push({
      type: b[at] as ChangeType,
      seq: readF64(b, at + 16),
      version: readF64(b, at + 24),
      expiresAtMs: readF64(b, at + 32),
      key: b.subarray(k, k + kl),
      value: has ? b.subarray(k + kl, k + kl + vl) : null,
      valueBytes: vl,
    });
    at = k + kl + (has ? vl : 0);
  }
  return out;
}
