/**
 * Keys written whole, many to a record: the SNAP_KEYS records of a shard's
 * snapshot (snapshot.ts) and of a backup's part (backup.ts), and their
 * reading (recovery, restore).
 *
 *   SNAP_KEYS  u32 count, then per key: u32 keyBytes, u32 valueBytes,
 *              f64 version, f64 expiresAtMs, key, value
 *
 * A record is built in place in one reused buffer (framing costs no
 * allocation) and handed on once it holds CHUNK_BYTES, or when the writer
 * needs what it has out now (a backup, before the effect record that follows
 * the keys).
 */
import { readF64, writeF64 } from "../shard/command.js";
import { HEADER_BYTES, sealFrame } from "../wal/record.js";
import { JournalRecord } from "./effects.js";

/** A SNAP_KEYS record is handed on once it holds this many bytes. */
const CHUNK_BYTES = 1024 * 1024;

export class KeyChunks {
  private chunk = new Uint8Array(CHUNK_BYTES + 64 * 1024);
  private end = HEADER_BYTES + 4;
  /** Keys in the record being built. */
  private inChunk = 0;

  /** `emit` gets each sealed record: `record[0, length)`, valid only during the call. */
  constructor(private readonly emit: (record: Uint8Array, length: number) => void) {}

  add(key: Uint8Array, value: Uint8Array, version: number, expiresAtMs: number): void {
    const need = 24 + key.length + value.length;
    if (this.end + need > this.chunk.length) {
      this.flush();
      if (this.end + need > this.chunk.length) {
        const grown = new Uint8Array(this.end + need); // one key larger than a chunk: a record of its own
        grown.set(this.chunk.subarray(0, this.end));
        this.chunk = grown;
      }
    }
    const b = this.chunk;
    const v = new DataView(b.buffer);
    v.setUint32(this.end, key.length, true);
    v.setUint32(this.end + 4, value.length, true);
    writeF64(b, this.end + 8, version);
    writeF64(b, this.end + 16, expiresAtMs);
    b.set(key, this.end + 24);
    b.set(value, this.end + 24 + key.length);
    this.end += need;
    this.inChunk++;
    if (this.end >= CHUNK_BYTES) this.flush();
  }

  /** Hands on the record being built, if it holds any key. */
  flush(): void {
    if (this.inChunk === 0) return;
    new DataView(this.chunk.buffer).setUint32(HEADER_BYTES, this.inChunk, true);
    sealFrame(this.chunk, JournalRecord.SNAP_KEYS, this.end);
    this.emit(this.chunk, this.end);
    this.discard();
  }

  /** Drops the record being built (a walk starting over). */
  discard(): void {
    this.end = HEADER_BYTES + 4;
    this.inChunk = 0;
    if (this.chunk.length > 4 * CHUNK_BYTES) this.chunk = new Uint8Array(CHUNK_BYTES + 64 * 1024);
  }
}

/**
 * Reads the keys of a SNAP_KEYS payload `b[start, end)` (after its count,
 * `count` keys), handing each to `visit` (key and value are views into `b`).
 * Returns what is wrong with the record, or null.
 */
export function readKeys(
  b: Uint8Array,
  start: number,
  end: number,
  count: number,
  visit: (key: Uint8Array, value: Uint8Array, version: number, expiresAtMs: number) => void,
): string | null {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = start;
  for (let i = 0; i < count; i++) {
    if (p + 24 > end) return "a key record runs past its chunk";
    const kl = v.getUint32(p, true);
    const vl = v.getUint32(p + 4, true);
    if (p + 24 + kl + vl > end) return "a key record runs past its chunk";
    visit(
      b.subarray(p + 24, p + 24 + kl),
      b.subarray(p + 24 + kl, p + 24 + kl + vl),
      readF64(b, p + 8),
      readF64(b, p + 16),
    );
    p += 24 + kl + vl;
  }
  return p === end ? null : "a chunk's count does not match its bytes";
}
