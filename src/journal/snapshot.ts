/**
 * A shard's snapshot: every key of its map in one file, taken while the
 * shard keeps serving.
 *
 * File: `snap-<seq>.snap`, where seq is the first log segment recovery must
 * replay after loading it. Records use the WAL's framing (length, CRC32C,
 * type; src/wal/record.ts):
 *
 *   SNAP_HEAD  u64 seq, f64 startedAtMs, f64 the last transaction id this shard had seen
 *   SNAP_KEYS  u32 count, then per key: u32 keyBytes, u32 valueBytes,
 *              f64 version, f64 expiresAtMs, key, value   (many of these)
 *   SNAP_END   f64 keys written, f64 the shard's last version, f64 finishedAtMs
 *
 * Fuzzy, like a database's fuzzy checkpoint. Starting a snapshot seals the
 * log's current segment and opens segment `seq`; then the writer walks the
 * map a few thousand keys at a time between batches of commands, so the map
 * changes under the walk. That is safe because every change after the start
 * is in segments >= seq, and the journal records effects that set a key's
 * whole state (effects.ts): replaying them over the snapshot ends in the map
 * as it was at the crash, whichever copy of a key the walk caught. A key
 * present for the whole walk is caught at least once; one written or
 * removed meanwhile is fixed by the replay. When the index is rebuilt
 * mid-walk (slot numbers change) the walk starts over on an emptied file.
 *
 * Atomic publish: written to `.tmp`, fsynced, renamed, directory fsynced.
 * Recovery ignores `.tmp` files and refuses a named snapshot that fails its
 * checksums or lacks its END record (it was complete when renamed, so the
 * disk changed it). Only after the rename are segments before `seq` and
 * older snapshots deleted; a crash in between leaves both, and recovery
 * finishes the deletion (decision 0222).
 */
import { readF64, writeF64 } from "../shard/command.js";
import type { ShardCore } from "../shard/execute.js";
import { getU64, HEADER_BYTES, putU64, readFrame, sealFrame } from "../wal/record.js";
import { JournalRecord } from "./effects.js";
import { KeyChunks, readKeys } from "./key-chunks.js";
import type { JournalFile, JournalFs } from "./files.js";

export function snapshotName(seq: number): string {
  return `snap-${String(seq).padStart(16, "0")}.snap`;
}

const SNAP_NAME = /^snap-(\d{16})\.snap$/;

/** The first segment to replay after this snapshot, or -1 when `name` is not a snapshot. */
export function snapshotSeq(name: string): number {
  const m = SNAP_NAME.exec(name);
  return m === null ? -1 : Number(m[1]);
}

export class SnapshotWriter {
  private readonly file: JournalFile;
  private readonly tmp: string;
  private readonly chunks = new KeyChunks((record, length) => {
    this.file.write(record, length);
    this.bytes += length;
  });
  private cursor = 0;
  private epoch: number;
  private headBytes = 0;
  /** Keys written (counting a key caught twice twice). */
  keys = 0;
  /** Bytes written to the file so far. */
  bytes = 0;
  done = false;
  /** Walks restarted because the index was rebuilt under them. */
  restarts = 0;

  constructor(
    private readonly fs: JournalFs,
    private readonly dir: string,
    readonly seq: number,
    private readonly core: ShardCore,
    readonly startedAtMs: number,
    lastTxnId: number,
  ) {
    this.tmp = `${dir}/${snapshotName(seq)}.tmp`;
    fs.remove(this.tmp);
    this.file = fs.open(this.tmp);
    this.epoch = core.store.indexEpoch;
    const head = new Uint8Array(HEADER_BYTES + 24);
    const v = new DataView(head.buffer);
    putU64(v, HEADER_BYTES, seq);
    writeF64(head, HEADER_BYTES + 8, startedAtMs);
    writeF64(head, HEADER_BYTES + 16, lastTxnId);
    sealFrame(head, JournalRecord.SNAP_HEAD, head.length);
    this.file.write(head, head.length);
    this.headBytes = this.bytes = head.length;
  }

  /**
   * Walks up to `maxKeys` more keys into the file. Returns true when the
   * walk is complete (then call finish()).
   */
  step(maxKeys: number): boolean {
    const store = this.core.store;
    if (store.indexEpoch !== this.epoch) {
      // Slots moved: what was written may miss keys. Start over, same seq.
      this.epoch = store.indexEpoch;
      this.file.truncate(this.headBytes);
      this.bytes = this.headBytes;
      this.keys = 0;
      this.cursor = 0;
      this.chunks.discard();
      this.restarts++;
    }
    this.cursor = store.scan(this.cursor, maxKeys, (slot) => {
      this.chunks.add(store.key(slot), store.value(slot), store.version(slot), store.expiresAtMs(slot));
      this.keys++;
    });
    return this.cursor === 0;
  }

  /** Writes the END record, makes the file durable and publishes it under its real name. */
  finish(finishedAtMs: number): { name: string; bytes: number } {
    this.chunks.flush();
    const tail = new Uint8Array(HEADER_BYTES + 24);
    writeF64(tail, HEADER_BYTES, this.keys);
    writeF64(tail, HEADER_BYTES + 8, this.core.lastVersion);
    writeF64(tail, HEADER_BYTES + 16, finishedAtMs);
    sealFrame(tail, JournalRecord.SNAP_END, tail.length);
    this.file.write(tail, tail.length);
    this.bytes += tail.length;
    this.file.sync();
    this.file.close();
    const name = snapshotName(this.seq);
    this.fs.rename(this.tmp, `${this.dir}/${name}`);
    this.fs.syncDir(this.dir);
    this.done = true;
    return { name, bytes: this.bytes };
  }

  /** Gives up (a write failed): removes the temporary file. */
  abandon(): void {
    try {
      this.file.close();
    } catch {
      // already failing; the file is removed below or at the next recovery
    }
    try {
      this.fs.remove(this.tmp);
    } catch {
      // recovery removes .tmp files
    }
  }
}

/** Why a snapshot file cannot be loaded: the byte offset and what is wrong. */
export interface SnapshotDamage {
  offset: number;
  why: string;
}

/**
 * Loads a snapshot file into `core` (empty). Returns the segment to replay
 * from and the snapshot's finish time, or the damage found.
 */
export function loadSnapshot(
  buf: Uint8Array,
  core: ShardCore,
  maxRecordBytes: number,
): { seq: number; finishedAtMs: number; keys: number; lastTxnId: number } | SnapshotDamage {
  const head = readFrame(buf, 0, maxRecordBytes);
  if (head === "short" || head === "bad" || head.type !== JournalRecord.SNAP_HEAD || head.end - head.start !== 24)
    return { offset: 0, why: "the header record is missing or damaged" };
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const seq = getU64(v, head.start);
  const lastTxnId = readF64(buf, head.start + 16);
  const store = core.store;
  let at = head.end;
  for (;;) {
    const f = readFrame(buf, at, maxRecordBytes);
    if (f === "short") return { offset: at, why: "the file ends before its END record" };
    if (f === "bad") return { offset: at, why: "a record fails its checksum or length" };
    if (f.type === JournalRecord.SNAP_END) {
      if (f.end - f.start !== 24) return { offset: at, why: "a damaged END record" };
      if (f.end !== buf.length) return { offset: f.end, why: "bytes after the END record" };
      const last = readF64(buf, f.start + 8);
      if (last > core.lastVersion) core.lastVersion = last;
      return { seq, finishedAtMs: readF64(buf, f.start + 16), keys: readF64(buf, f.start), lastTxnId };
    }
    if (f.type !== JournalRecord.SNAP_KEYS || f.end - f.start < 4) return { offset: at, why: "an unknown record type" };
    const bad = readKeys(buf, f.start + 4, f.end, v.getUint32(f.start, true), (key, value, version, expiresAtMs) => {
      store.set(key, value, version, expiresAtMs);
      if (version > core.lastVersion) core.lastVersion = version;
    });
    if (bad !== null) return { offset: at, why: bad };
    at = f.end;
  }
}
