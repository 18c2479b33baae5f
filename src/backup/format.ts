/**
 * The backup file (docs/backup.md, "The file"): what `piccolo backup`
 * writes and `piccolo restore` reads. One format for a single node and for
 * a cluster.
 *
 * Every record uses the WAL's framing (src/wal/record.ts): u32 payload
 * length, u32 CRC32C of type and payload, u8 type, payload. So a damaged
 * byte is found at its record, and the reader says where.
 *
 *   HEAD        JSON: magic, format, kind ("node" | "cluster"), consistency,
 *               sections, createdAtMs, the build that wrote it
 *   per section (a node's shard, or a cluster's partition):
 *     SECTION     JSON: its index, and what it is
 *     a shard:      SNAP_KEYS / EFFECTS / TXN_PART / TXN_ABORT records, in the
 *                   order they happened (src/journal/backup.ts), replayed in order
 *     a partition:  PARTITION, the partition's map read at one point
 *                   (src/cluster/partition-machine.ts, snapshot())
 *     PART_END    f64 keys walked, f64 last version, f64 cut time, f64 walk restarts
 *   END         f64 bytes before this record, f64 sections, then the SHA-256
 *               of every byte before this record
 *
 * The SHA-256 covers the whole file, so a file cut short, reordered or
 * altered anywhere is refused even where each record's CRC still holds, and
 * a file that stops before END is incomplete, whatever it holds.
 */
import { createHash, type Hash } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import { JournalRecord, readPartPrefix } from "../journal/effects.js";
import { PART_END, type PartEnd, partEndRecord } from "../journal/backup.js";
import { readF64, writeF64 } from "../shard/command.js";
import { HEADER_BYTES, readFrame, sealFrame } from "../wal/record.js";

export { type PartEnd, partEndRecord };

export const BACKUP_MAGIC = "piccolo backup";
/** Bumped when the file changes in a way an older reader would misread; a reader refuses formats it does not know. */
export const BACKUP_FORMAT = 1;

export const BackupRecord = {
  HEAD: 32,
  SECTION: 33,
  PARTITION: 34,
  END: 36,
  /** Shared with the shard's part files (src/journal/backup.ts). */
  PART_END,
} as const;

/** Shard section records: the journal's own (src/journal/effects.ts). */
const SHARD_RECORDS: ReadonlySet<number> = new Set([
  JournalRecord.SNAP_KEYS,
  JournalRecord.EFFECTS,
  JournalRecord.TXN_PART,
  JournalRecord.TXN_ABORT,
]);

/** The largest record a reader accepts: a partition read whole (BACKUP_MAX_PARTITION_BYTES) plus slack. */
export const BACKUP_MAX_RECORD_BYTES = 512 * 1024 * 1024;

export interface BackupHead {
  magic: string;
  format: number;
  kind: "node" | "cluster";
  /**
   * "node": every shard at one point of the node's order of requests (a
   * linearizable point for the whole node). "partition": each partition at
   * its own linearizable point, taken one after another.
   */
  consistency: "node" | "partition";
  sections: number;
  createdAtMs: number;
  /** The piccolo version that wrote it. */
  writer: string;
}

export interface SectionHead {
  section: number;
  kind: "shard" | "partition";
}

const utf8 = new TextEncoder();

/** One framed record. */
export function record(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + payload.length);
  out.set(payload, HEADER_BYTES);
  sealFrame(out, type, out.length);
  return out;
}

export function jsonRecord(type: number, value: object): Uint8Array {
  return record(type, utf8.encode(JSON.stringify(value)));
}

/** The END record for a file of `bytes` bytes (so far) and `sections` sections, hashed by `hash`. */
export function endRecord(bytes: number, sections: number, hash: Hash): Uint8Array {
  const p = new Uint8Array(16 + 32);
  writeF64(p, 0, bytes);
  writeF64(p, 8, sections);
  p.set(hash.digest(), 16);
  return record(BackupRecord.END, p);
}

/** Why a file is refused: where, and what is wrong. */
export class BackupFileError extends Error {
  override name = "BackupFileError";
  constructor(
    readonly offset: number,
    readonly why: string,
  ) {
    super(`at byte ${offset}: ${why}`);
  }
}

/** What a reader hears, in file order. Payloads are views, valid only during the call. */
export interface BackupVisitor {
  head?(head: BackupHead): void;
  section?(s: SectionHead): void;
  /** A shard section's record (SNAP_KEYS, EFFECTS, TXN_PART, TXN_ABORT) or a partition's PARTITION. */
  data?(type: number, payload: Uint8Array, offset: number): void;
  partEnd?(section: number, end: PartEnd): void;
}

export interface BackupSummary {
  head: BackupHead;
  bytes: number;
  sha256: string;
}

/**
 * Reads the file at `path` record by record, checking every CRC, the
 * records' order, and at the end the SHA-256 of the whole; throws
 * BackupFileError with the offset. The visitor sees records as they are
 * read: a caller that builds something from them must not use it before
 * this returns (the file may yet prove damaged).
 */
export function readBackupFile(path: string, visit: BackupVisitor = {}): BackupSummary {
  const fd = openSync(path, "r");
  try {
    return readFrom(fd, visit);
  } finally {
    closeSync(fd);
  }
}

function readFrom(fd: number, visit: BackupVisitor): BackupSummary {
  const hash = createHash("sha256");
  let buf = new Uint8Array(4 * 1024 * 1024);
  let start = 0; // first unread byte in buf
  let end = 0; // end of the bytes in buf
  let fileOffset = 0; // file offset of buf[0]
  let eof = false;
  /** Makes at least `n` bytes available from `start`; false at the end of the file. */
  const need = (n: number): boolean => {
    while (end - start < n && !eof) {
      if (start > 0) {
        buf.copyWithin(0, start, end);
        fileOffset += start;
        end -= start;
        start = 0;
      }
      if (n > buf.length) {
        const grown = new Uint8Array(Math.max(n, buf.length * 2));
        grown.set(buf.subarray(0, end));
        buf = grown;
      }
      const got = readSync(fd, buf, end, buf.length - end, null);
      if (got === 0) eof = true;
      end += got;
    }
    return end - start >= n;
  };

  let head: BackupHead | null = null;
  let section = -1;
  let sectionKind: SectionHead["kind"] | null = null;
  let inSection = false;
  for (;;) {
    const at = fileOffset + start;
    if (!need(HEADER_BYTES))
      throw new BackupFileError(
        at,
        head === null ? "not a backup file (empty)" : "the file ends before its END record: it is incomplete",
      );
    const length = new DataView(buf.buffer, buf.byteOffset + start, HEADER_BYTES).getUint32(0, true);
    if (length > BACKUP_MAX_RECORD_BYTES) throw new BackupFileError(at, "a record's length is damaged");
    if (!need(HEADER_BYTES + length)) throw new BackupFileError(at, "the file ends inside a record: it is incomplete");
    const f = readFrame(buf.subarray(start, start + HEADER_BYTES + length), 0, BACKUP_MAX_RECORD_BYTES);
    if (f === "short" || f === "bad") throw new BackupFileError(at, "a record fails its checksum: the file is damaged");
    const payload = buf.subarray(start + f.start, start + f.end);
    const type = f.type;
    if (type === BackupRecord.END) {
      if (head === null) throw new BackupFileError(at, "END before HEAD");
      if (inSection) throw new BackupFileError(at, `section ${section} has no PART_END`);
      if (payload.length !== 48) throw new BackupFileError(at, "a damaged END record");
      const bytes = readF64(payload, 0);
      const sections = readF64(payload, 8);
      const digest = hash.digest();
      if (bytes !== at) throw new BackupFileError(at, `END says ${bytes} bytes came before it, but ${at} did`);
      if (sections !== head.sections || section + 1 !== head.sections)
        throw new BackupFileError(at, `the file holds ${section + 1} sections; its HEAD says ${head.sections}`);
      if (Buffer.compare(digest, payload.subarray(16, 48)) !== 0)
        throw new BackupFileError(at, "the SHA-256 of the file does not match the one at its end: the file is damaged");
      start += HEADER_BYTES + length;
      if (need(1)) throw new BackupFileError(fileOffset + start, "bytes after the END record");
      return { head, bytes: at + HEADER_BYTES + length, sha256: digest.toString("hex") };
    }
    hash.update(buf.subarray(start, start + HEADER_BYTES + length));
    if (head === null) {
      if (type !== BackupRecord.HEAD) throw new BackupFileError(at, "not a backup file (no HEAD record)");
      head = parseJson(payload, at) as unknown as BackupHead;
      if (head.magic !== BACKUP_MAGIC) throw new BackupFileError(at, "not a backup file (its HEAD is not Piccolo's)");
      if (head.format !== BACKUP_FORMAT)
        throw new BackupFileError(
          at,
          `format ${String(head.format)}, which this build does not read (it reads format ${BACKUP_FORMAT}): restore it with the build that wrote it (${String(head.writer)}) or a newer one`,
        );
      if (!Number.isInteger(head.sections) || head.sections < 0 || (head.kind !== "node" && head.kind !== "cluster"))
        throw new BackupFileError(at, "a damaged HEAD record");
      visit.head?.(head);
    } else if (type === BackupRecord.SECTION) {
      if (inSection) throw new BackupFileError(at, `section ${section} has no PART_END`);
      const s = parseJson(payload, at) as unknown as SectionHead;
      if (s.section !== section + 1 || s.section >= head.sections)
        throw new BackupFileError(at, `section ${String(s.section)} out of order (expected ${section + 1})`);
      if (s.kind !== "shard" && s.kind !== "partition") throw new BackupFileError(at, "a damaged SECTION record");
      section = s.section;
      sectionKind = s.kind;
      inSection = true;
      visit.section?.(s);
    } else if (type === BackupRecord.PART_END) {
      if (!inSection) throw new BackupFileError(at, "PART_END outside a section");
      if (payload.length !== 32) throw new BackupFileError(at, "a damaged PART_END record");
      inSection = false;
      visit.partEnd?.(section, {
        keysWalked: readF64(payload, 0),
        lastVersion: readF64(payload, 8),
        cutAtMs: readF64(payload, 16),
        restarts: readF64(payload, 24),
      });
    } else {
      if (!inSection) throw new BackupFileError(at, `a record of type ${type} outside a section`);
      const fits = sectionKind === "shard" ? SHARD_RECORDS.has(type) : type === BackupRecord.PARTITION;
      if (!fits) throw new BackupFileError(at, `a record of type ${type} in a ${String(sectionKind)} section`);
      if (type === JournalRecord.TXN_PART && readPartPrefix(payload, 0, payload.length) === null)
        throw new BackupFileError(at, "a damaged transaction record");
      visit.data?.(type, payload, at);
    }
    start += HEADER_BYTES + length;
  }
}

function parseJson(payload: Uint8Array, at: number): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(new TextDecoder().decode(payload));
    if (typeof v === "object" && v !== null) return v as Record<string, unknown>;
  } catch {
    // below
  }
  throw new BackupFileError(at, "a record that should hold JSON does not");
}
