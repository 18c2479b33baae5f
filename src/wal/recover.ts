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
import { decodeSnapshot, isSnapshotFile, snapshotGroup } from "./snapshot-file.js";

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
  /** Highest entry index written in it, per group (absent: none of that group's entries). */
  maxIndex: Map<number, number>;
  bytes: number;
}

/** What one group recovers. */
export interface GroupRecovered {
  hardState: HardState;
  snapshot: Snapshot | null;
  /** Entries after the snapshot, contiguous. */
  entries: Entry[];
}

/** Group 0's recovery plus the log-wide report: the single-group view. */
export interface Recovered extends GroupRecovered {
  /** Set when a torn tail was cut off the last segment. */
  truncatedTail: { file: string; offset: number; bytes: number } | null;
}

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: 0, commit: 0 };

export function segmentName(seq: number): string {
  return `${String(seq).padStart(16, "0")}.wal`;
}

function isSegment(name: string): boolean {
  return /^\d{16}\.wal$/.test(name);
}

interface Replay {
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry[];
  base: number;
  markIndex: number;
}

export async function recover(
  fs: WalFs,
  dir: string,
  maxRecordBytes: number,
): Promise<{
  groups: Map<number, GroupRecovered>;
  truncatedTail: Recovered["truncatedTail"];
  segments: SegmentInfo[];
  snapshots: Map<number, string[]>;
}> {
  const names = (await fs.list(dir)).sort();
  for (const n of names) if (n.endsWith(".tmp")) await fs.remove(`${dir}/${n}`); // an unfinished snapshot
  const snapshots = new Map<number, string[]>();
  for (const n of names.filter(isSnapshotFile)) {
    const g = snapshotGroup(n);
    snapshots.set(g, [...(snapshots.get(g) ?? []), n]);
  }
  const replays = new Map<number, Replay>();
  const replayOf = (g: number): Replay => {
    let r = replays.get(g);
    if (r === undefined)
      replays.set(g, (r = { hardState: EMPTY_HARD_STATE, snapshot: null, entries: [], base: 0, markIndex: 0 }));
    return r;
  };
  for (const [g, files] of snapshots) {
    const newest = files[files.length - 1]!;
    const snapshot = decodeSnapshot(await fs.read(`${dir}/${newest}`));
    if (snapshot === null) throw new WalCorruptError(newest, 0, "snapshot file fails its checksum");
    const r = replayOf(g);
    r.snapshot = snapshot;
    r.base = snapshot.meta.index;
  }
  let truncatedTail: Recovered["truncatedTail"] = null;
  const segments: SegmentInfo[] = [];
  const segNames = names.filter(isSegment);

  for (const [i, name] of segNames.entries()) {
    const buf = await fs.read(`${dir}/${name}`);
    const last = i === segNames.length - 1;
    const seg: SegmentInfo = { seq: Number(name.slice(0, 16)), name, maxIndex: new Map(), bytes: buf.length };
    segments.push(seg);
    let at = 0;
    while (at < buf.length) {
      const rr = readRecord(buf, at, maxRecordBytes);
      if (rr === "short" || rr === "bad") {
        const why = rr === "short" ? "record runs past the end of the file" : "checksum or layout mismatch";
        if (!last) throw new WalCorruptError(name, at, `${why} in a sealed segment`);
        const later = findValidRecord(buf, at + 1, maxRecordBytes);
        if (later >= 0) throw new WalCorruptError(name, at, `${why}, with a valid record after it at ${later}`);
        truncatedTail = { file: name, offset: at, bytes: buf.length - at };
        const f = await fs.open(`${dir}/${name}`);
        try {
          await f.truncate(at);
          await f.sync();
        } finally {
          await f.close();
        }
        seg.bytes = at;
        break;
      }
      const rec = rr.record;
      const r = replayOf(rec.group);
      if (rec.type === RecordType.HardState) {
        r.hardState = rec.hardState;
      } else if (rec.type === RecordType.Snapshot) {
        r.markIndex = Math.max(r.markIndex, rec.index);
        if (rec.replacesLog) r.entries = [];
        r.base = Math.max(r.base, rec.index);
        r.entries = r.entries.filter((e) => e.index > r.base);
      } else if (rec.entries.length > 0) {
        const first = rec.entries[0]!.index;
        const expectedMax = r.entries.length > 0 ? r.entries[r.entries.length - 1]!.index + 1 : r.base + 1;
        if (first > expectedMax)
          throw new WalCorruptError(
            name,
            at,
            `group ${rec.group}: entry ${first} follows ${expectedMax - 1}: a gap in the log`,
          );
        // A batch starting at or below the end replaces the log from there.
        r.entries = r.entries.filter((e) => e.index < first);
        for (const e of rec.entries) if (e.index > r.base) r.entries.push(e);
        const top = rec.entries[rec.entries.length - 1]!.index;
        seg.maxIndex.set(rec.group, Math.max(seg.maxIndex.get(rec.group) ?? 0, top));
      }
      at = rr.next;
    }
  }
  const groups = new Map<number, GroupRecovered>();
  for (const [g, r] of replays) {
    if (r.markIndex > (r.snapshot?.meta.index ?? 0))
      throw new WalCorruptError(
        segNames[segNames.length - 1] ?? dir,
        0,
        `group ${g}: snapshot ${r.markIndex} is recorded but missing`,
      );
    const lastIndex = r.entries.length > 0 ? r.entries[r.entries.length - 1]!.index : r.base;
    if (r.hardState.commit > lastIndex)
      throw new WalCorruptError(
        dir,
        0,
        `group ${g}: commit index ${r.hardState.commit} is beyond the last entry ${lastIndex}`,
      );
    groups.set(g, { hardState: r.hardState, snapshot: r.snapshot, entries: r.entries });
  }
  return { groups, truncatedTail, segments, snapshots };
}

/** The first offset at or after `from` where a whole, valid record starts; -1 if none. */
function findValidRecord(buf: Uint8Array, from: number, maxRecordBytes: number): number {
  for (let at = from; at < buf.length; at++) {
    const r = readRecord(buf, at, maxRecordBytes);
    if (r !== "short" && r !== "bad") return at;
  }
  return -1;
}
