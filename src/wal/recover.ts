/**
 * Reading a WAL back after a restart, and deciding what damage means.
 *
 * The rule that separates a torn write from corruption:
 *   - A bad or short record in the LAST segment, with no valid record
 *     anywhere after it, is a torn tail: the process died while writing its
 *     last batch, which was therefore never acknowledged (appends resolve
 *     only after fsync). It is truncated away, and reported.
 *   - A bad record with a valid record after it, or any bad record in an
 *     earlier segment (segments are fsynced before the next one starts), or
 *     a gap between entry indexes, cannot come from a crash: the disk
 *     returned wrong bytes. Recovery stops with WalCorruptError, naming the
 *     file and offset, and the node refuses to start rather than serve
 *     wrong data. Only an operator (or a re-sync from the other replicas,
 *     once clustering lands) can decide what to do.
 *
 * "Valid record after it" is found by trying every later byte offset as a
 * record start: a false match needs a length that fits and a CRC32C match,
 * about one chance in 4 billion per offset, and the scan runs only on the
 * failure path over one segment's tail.
 */
import type { Entry, HardState, Snapshot } from "../raft/types.js";
import type { WalFs } from "./fs.js";
import { RecordType, readRecord } from "./record.js";
import { decodeSnapshot, isSnapshotFile } from "./snapshot-file.js";

export class WalCorruptError extends Error {
  override name = "WalCorruptError";
  readonly code = "WAL_CORRUPT";
  constructor(
    readonly file: string,
    readonly offset: number,
    why: string,
  ) {
    super(`WAL corrupt: ${file} at byte ${offset}: ${why}; refusing to start rather than serve wrong data`);
  }
}

export interface SegmentInfo {
  seq: number;
  name: string;
  /** Highest entry index written in it (0: none). */
  maxIndex: number;
  bytes: number;
}

export interface Recovered {
  hardState: HardState;
  snapshot: Snapshot | null;
  /** Entries after the snapshot, contiguous. */
  entries: Entry[];
  /** Set when a torn tail was cut off the last segment. */
  truncatedTail: { file: string; offset: number; bytes: number } | null;
}

export function segmentName(seq: number): string {
  return `${String(seq).padStart(16, "0")}.wal`;
}

function isSegment(name: string): boolean {
  return /^\d{16}\.wal$/.test(name);
}

export async function recover(
  fs: WalFs,
  dir: string,
  maxRecordBytes: number,
): Promise<{ recovered: Recovered; segments: SegmentInfo[]; snapshots: string[] }> {
  const names = (await fs.list(dir)).sort();
  for (const n of names) if (n.endsWith(".tmp")) await fs.remove(`${dir}/${n}`); // an unfinished snapshot
  const snapshots = names.filter(isSnapshotFile);
  let snapshot: Snapshot | null = null;
  if (snapshots.length > 0) {
    const newest = snapshots[snapshots.length - 1]!;
    snapshot = decodeSnapshot(await fs.read(`${dir}/${newest}`));
    if (snapshot === null) throw new WalCorruptError(newest, 0, "snapshot file fails its checksum");
  }
  let base = snapshot?.meta.index ?? 0;
  let hardState: HardState = { term: 0, vote: 0, commit: 0 };
  let entries: Entry[] = [];
  let markIndex = 0;
  let truncatedTail: Recovered["truncatedTail"] = null;
  const segments: SegmentInfo[] = [];
  const segNames = names.filter(isSegment);

  for (const [i, name] of segNames.entries()) {
    const buf = await fs.read(`${dir}/${name}`);
    const last = i === segNames.length - 1;
    const seg: SegmentInfo = { seq: Number(name.slice(0, 16)), name, maxIndex: 0, bytes: buf.length };
    segments.push(seg);
    let at = 0;
    while (at < buf.length) {
      const r = readRecord(buf, at, maxRecordBytes);
      if (r === "short" || r === "bad") {
        const why = r === "short" ? "record runs past the end of the file" : "checksum or layout mismatch";
        if (!last) throw new WalCorruptError(name, at, `${why} in a sealed segment`);
        const later = findValidRecord(buf, at + 1, maxRecordBytes);
        if (later >= 0) throw new WalCorruptError(name, at, `${why}, with a valid record after it at ${later}`);
        truncatedTail = { file: name, offset: at, bytes: buf.length - at };
        const f = await fs.open(`${dir}/${name}`);
        await f.truncate(at);
        await f.sync();
        await f.close();
        seg.bytes = at;
        break;
      }
      const rec = r.record;
      if (rec.type === RecordType.HardState) {
        hardState = rec.hardState;
      } else if (rec.type === RecordType.Snapshot) {
        markIndex = Math.max(markIndex, rec.index);
        if (rec.replacesLog) entries = [];
        base = Math.max(base, rec.index);
        entries = entries.filter((e) => e.index > base);
      } else if (rec.entries.length > 0) {
        const first = rec.entries[0]!.index;
        const expectedMax = entries.length > 0 ? entries[entries.length - 1]!.index + 1 : base + 1;
        if (first > expectedMax)
          throw new WalCorruptError(name, at, `entry ${first} follows ${expectedMax - 1}: a gap in the log`);
        // A batch starting at or below the end replaces the log from there.
        entries = entries.filter((e) => e.index < first);
        for (const e of rec.entries) if (e.index > base) entries.push(e);
        seg.maxIndex = Math.max(seg.maxIndex, rec.entries[rec.entries.length - 1]!.index);
      }
      at = r.next;
    }
  }
  if (markIndex > (snapshot?.meta.index ?? 0))
    throw new WalCorruptError(segNames[segNames.length - 1] ?? dir, 0, `snapshot ${markIndex} is recorded but missing`);
  const lastIndex = entries.length > 0 ? entries[entries.length - 1]!.index : base;
  if (hardState.commit > lastIndex)
    throw new WalCorruptError(dir, 0, `commit index ${hardState.commit} is beyond the last entry ${lastIndex}`);
  return { recovered: { hardState, snapshot, entries, truncatedTail }, segments, snapshots };
}

/** The first offset at or after `from` where a whole, valid record starts; -1 if none. */
function findValidRecord(buf: Uint8Array, from: number, maxRecordBytes: number): number {
  for (let at = from; at < buf.length; at++) {
    const r = readRecord(buf, at, maxRecordBytes);
    if (r !== "short" && r !== "bad") return at;
  }
  return -1;
}
