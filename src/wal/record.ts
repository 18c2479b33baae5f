/**
 * The WAL's record format: every record is length-prefixed and checksummed,
 * so a reader always knows where a record ends and whether it is intact.
 *
 *   0        4        8    9
 *   +--------+--------+----+------------------+
 *   | length | crc32c |type| payload          |
 *   +--------+--------+----+------------------+
 *     u32 LE   u32 LE   u8   `length` bytes
 *
 * The CRC covers the type byte and the payload. CRC32C (Castagnoli) is what
 * ext4, iSCSI and etcd's WAL use: hardware-accelerated on x86 and ARM, and
 * made for exactly this (decision 0150). Numbers that can exceed 2^32
 * (indexes, terms) are stored as two u32 halves, little endian: JS numbers
 * are exact to 2^53, which no log reaches.
 *
 * Every payload starts with u32 group: one WAL is shared by all the Raft
 * groups (partitions) of a shard worker, so one fsync covers them all
 * (decision 0182). A single-group user writes group 0.
 *
 * Record types (after the group):
 *   ENTRIES     u32 count, then per entry: u64 index, u64 term, u8 type,
 *               u32 size, data. Replay rule: a batch whose first index is at
 *               or below the group's last replayed one *replaces* its log
 *               from there (a follower's conflicting suffix was overwritten).
 *   HARD_STATE  u64 term, u32 vote, u64 commit.
 *   SNAPSHOT    u64 index, u64 term, u8 replacesLog: a snapshot covering the
 *               group's log up to index is saved (in its own file); entries
 *               up to it are gone. With replacesLog (a snapshot received from
 *               the leader), every entry before the record is gone too.
 */
import { crc32c } from "./crc32c.js";
import type { Entry, EntryType, HardState } from "../raft/types.js";

export const RecordType = { Entries: 1, HardState: 2, Snapshot: 3 } as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];

export const HEADER_BYTES = 9;
const ENTRY_HEADER_BYTES = 8 + 8 + 1 + 4;
const TWO_32 = 2 ** 32;

export function putU64(v: DataView, at: number, n: number): void {
  v.setUint32(at, n % TWO_32, true);
  v.setUint32(at + 4, Math.floor(n / TWO_32), true);
}

export function getU64(v: DataView, at: number): number {
  return v.getUint32(at, true) + v.getUint32(at + 4, true) * TWO_32;
}

/** Frames a payload as a record: header + payload, CRC over type and payload. */
function frame(type: RecordType, payloadBytes: number, fill: (v: DataView, at: number, out: Uint8Array) => void) {
  const out = new Uint8Array(HEADER_BYTES + payloadBytes);
  const v = new DataView(out.buffer);
  v.setUint32(0, payloadBytes, true);
  out[8] = type;
  fill(v, HEADER_BYTES, out);
  v.setUint32(4, crc32c(out.subarray(8)), true);
  return out;
}

/** Bytes of an Entries record's payload before its entries (group, count). */
export const ENTRIES_HEAD_BYTES = 8;
/** Bytes one entry adds to an Entries record. */
export function entryBytes(e: Entry): number {
  return ENTRY_HEADER_BYTES + e.data.length;
}

export function encodeEntries(group: number, entries: readonly Entry[]): Uint8Array {
  let bytes = ENTRIES_HEAD_BYTES;
  for (const e of entries) bytes += ENTRY_HEADER_BYTES + e.data.length;
  return frame(RecordType.Entries, bytes, (v, at, out) => {
    v.setUint32(at, group, true);
    v.setUint32(at + 4, entries.length, true);
    at += ENTRIES_HEAD_BYTES;
    for (const e of entries) {
      putU64(v, at, e.index);
      putU64(v, at + 8, e.term);
      v.setUint8(at + 16, e.type);
      v.setUint32(at + 17, e.data.length, true);
      out.set(e.data, at + ENTRY_HEADER_BYTES);
      at += ENTRY_HEADER_BYTES + e.data.length;
    }
  });
}

export function encodeHardState(group: number, hs: HardState): Uint8Array {
  return frame(RecordType.HardState, 24, (v, at) => {
    v.setUint32(at, group, true);
    putU64(v, at + 4, hs.term);
    v.setUint32(at + 12, hs.vote, true);
    putU64(v, at + 16, hs.commit);
  });
}

export function encodeSnapshotMark(group: number, index: number, term: number, replacesLog: boolean): Uint8Array {
  return frame(RecordType.Snapshot, 21, (v, at) => {
    v.setUint32(at, group, true);
    putU64(v, at + 4, index);
    putU64(v, at + 12, term);
    v.setUint8(at + 20, replacesLog ? 1 : 0);
  });
}

export type Record = { group: number } & (
  | { type: typeof RecordType.Entries; entries: Entry[] }
  | { type: typeof RecordType.HardState; hardState: HardState }
  | { type: typeof RecordType.Snapshot; index: number; term: number; replacesLog: boolean }
);

/**
 * Seals a record built in place: `buf[HEADER_BYTES, end)` holds the payload;
 * writes the header (length, CRC32C, type) in front of it. For writers that
 * build records in a reused buffer (the shard journal, src/journal/), so
 * framing costs no allocation.
 */
export function sealFrame(buf: Uint8Array, type: number, end: number): void {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  v.setUint32(0, end - HEADER_BYTES, true);
  buf[8] = type;
  v.setUint32(4, crc32c(buf.subarray(8, end)), true);
}

/**
 * The frame at `at`, unparsed: its type and where its payload lies. The
 * same rules as readRecord ("short": the bytes end first; "bad": a length
 * over the limit or a CRC mismatch); the caller parses the payload.
 */
export function readFrame(
  buf: Uint8Array,
  at: number,
  maxRecordBytes: number,
): { type: number; start: number; end: number } | "short" | "bad" {
  if (buf.length - at < HEADER_BYTES) return "short";
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const length = v.getUint32(at, true);
  if (length > maxRecordBytes) return "bad";
  const end = at + HEADER_BYTES + length;
  if (end > buf.length) return "short";
  if (crc32c(buf.subarray(at + 8, end)) !== v.getUint32(at + 4, true)) return "bad";
  return { type: buf[at + 8]!, start: at + HEADER_BYTES, end };
}

/**
 * Reads the record at `at`. Returns the record and where the next one
 * starts; "short" when the bytes end before the record does (a torn write,
 * or the end of the file); "bad" when the checksum fails or the payload does
 * not parse. The caller decides what a bad record means (src/wal/wal.ts).
 */
export function readRecord(
  buf: Uint8Array,
  at: number,
  maxRecordBytes: number,
): { record: Record; next: number } | "short" | "bad" {
  const f = readFrame(buf, at, maxRecordBytes);
  if (f === "short" || f === "bad") return f;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const record = parsePayload(f.type, v, f.start, f.end, buf);
  return record === null ? "bad" : { record, next: f.end };
}

function parsePayload(type: number, v: DataView, at: number, end: number, buf: Uint8Array): Record | null {
  const len = end - at;
  if (len < 4) return null;
  const group = v.getUint32(at, true);
  if (type === RecordType.HardState && len === 24)
    return {
      group,
      type,
      hardState: { term: getU64(v, at + 4), vote: v.getUint32(at + 12, true), commit: getU64(v, at + 16) },
    };
  if (type === RecordType.Snapshot && len === 21)
    return {
      group,
      type,
      index: getU64(v, at + 4),
      term: getU64(v, at + 12),
      replacesLog: v.getUint8(at + 20) === 1,
    };
  if (type !== RecordType.Entries || len < ENTRIES_HEAD_BYTES) return null;
  const count = v.getUint32(at + 4, true);
  const entries: Entry[] = [];
  let p = at + ENTRIES_HEAD_BYTES;
  for (let i = 0; i < count; i++) {
    if (p + ENTRY_HEADER_BYTES > end) return null;
    const size = v.getUint32(p + 17, true);
    if (p + ENTRY_HEADER_BYTES + size > end) return null;
    entries.push({
      index: getU64(v, p),
      term: getU64(v, p + 8),
      type: v.getUint8(p + 16) as EntryType,
      // A copy: the entry outlives the file buffer it was read from.
      data: buf.slice(p + ENTRY_HEADER_BYTES, p + ENTRY_HEADER_BYTES + size),
    });
    p += ENTRY_HEADER_BYTES + size;
  }
  return p === end ? { group, type: RecordType.Entries, entries } : null;
}
