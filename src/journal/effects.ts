/**
 * What the journal records: the effect of each write on the map, not the
 * command that caused it.
 *
 *   SET     u8 1, u32 keyBytes, u32 valueBytes, f64 version, f64 expiresAtMs, key, value
 *   DEL     u8 2, u32 keyBytes, key
 *   EXPIRY  u8 3, u32 keyBytes, f64 expiresAtMs, key   (0: no TTL)
 *   FLUSH   u8 4
 *
 * Effects, because replaying them needs nothing but the map: no clock, no
 * limits, no re-execution of INCRBYFLOAT's formatting or APPEND's size
 * check, so a replay cannot decide differently from the original run. And
 * each effect sets a key's whole state (or its expiry alone), so applying
 * one twice, or applying it on top of a newer copy of the key, ends in the
 * same map once every later effect is applied too. That idempotence is what
 * lets a snapshot be taken while the shard keeps serving (snapshot.ts).
 * Redis's AOF logs commands and has to rewrite them into deterministic forms
 * (SET ... PXAT, no INCRBYFLOAT) for the same reason (decision 0220).
 *
 * Not recorded: a key removed because its TTL ran out (lazily on access, or
 * by the sweep). Its record says when it expires, and that moment has
 * passed for every reader after a restart too.
 *
 * A batch of effects is one journal record (src/wal/record.ts framing, type
 * EFFECTS), built in place in a reused buffer: recording costs a copy of the
 * key and value and no allocation.
 */
import { assert } from "../assert.js";
import { readF64, writeF64 } from "../shard/command.js";
import type { ShardCore } from "../shard/execute.js";
import { HEADER_BYTES, sealFrame } from "../wal/record.js";

/** Record types of the journal's files (beside the WAL's 1-3, never mixed with them). */
export const JournalRecord = {
  /** A batch of effects (log segments). */
  EFFECTS: 16,
  /** A snapshot's first record: u64 first log segment to replay after it, f64 start time. */
  SNAP_HEAD: 17,
  /** Keys of a snapshot: u32 count, then per key SET's layout without the kind byte. */
  SNAP_KEYS: 18,
  /** A snapshot's last record: f64 keys, f64 last version, f64 finish time. Without it the file is incomplete. */
  SNAP_END: 19,
  /**
   * A multi-shard transaction's part on this shard (docs/transactions.md):
   * f64 txn id, u32 participants, u16 shard each (padded to 4 bytes), then
   * effects as in EFFECTS. Applied on replay once a record follows it that
   * is not its TXN_ABORT; as the log's last record it is "in doubt", and
   * start-up asks the other participants (src/journal/recover.ts).
   */
  TXN_PART: 20,
  /** The part just before it is void (another participant could not write its part): f64 txn id. */
  TXN_ABORT: 21,
} as const;

const SET = 1;
const DEL = 2;
const EXPIRY = 3;
const FLUSH = 4;

/** The effects of the current batch, framed in place (header space first). */
export class EffectBuffer {
  buf = new Uint8Array(64 * 1024);
  /** End of the payload written so far; HEADER_BYTES when empty. */
  end = HEADER_BYTES;
  /** Effects since the last take(). */
  count = 0;

  /** The buffer holds a transaction part's prefix (startPart). */
  part = false;

  get empty(): boolean {
    return this.count === 0 && !this.part;
  }

  /** Begins a TXN_PART record's payload (the buffer must be empty): the id and the participants. */
  startPart(id: number, participants: readonly number[]): void {
    assert(this.empty, "a transaction part is a record of its own");
    this.room(12 + participants.length * 2 + 4);
    writeF64(this.buf, this.end, id);
    this.end += 8;
    this.u32(participants.length);
    for (const p of participants) {
      this.buf[this.end++] = p & 0xff;
      this.buf[this.end++] = p >>> 8;
    }
    while ((this.end - HEADER_BYTES) % 4 !== 0) this.buf[this.end++] = 0;
    this.part = true;
  }

  /** Payload bytes so far. */
  get bytes(): number {
    return this.end - HEADER_BYTES;
  }

  private room(n: number): void {
    if (this.end + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.end + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buf.subarray(0, this.end));
    this.buf = grown;
  }

  private u32(v: number): void {
    const b = this.buf;
    const at = this.end;
    b[at] = v & 0xff;
    b[at + 1] = (v >>> 8) & 0xff;
    b[at + 2] = (v >>> 16) & 0xff;
    b[at + 3] = (v >>> 24) & 0xff;
    this.end += 4;
  }

  set(key: Uint8Array, value: Uint8Array, version: number, expiresAtMs: number): void {
    this.room(25 + key.length + value.length);
    this.buf[this.end++] = SET;
    this.u32(key.length);
    this.u32(value.length);
    writeF64(this.buf, this.end, version);
    writeF64(this.buf, this.end + 8, expiresAtMs);
    this.end += 16;
    this.buf.set(key, this.end);
    this.end += key.length;
    this.buf.set(value, this.end);
    this.end += value.length;
    this.count++;
  }

  del(key: Uint8Array): void {
    this.room(5 + key.length);
    this.buf[this.end++] = DEL;
    this.u32(key.length);
    this.buf.set(key, this.end);
    this.end += key.length;
    this.count++;
  }

  expiry(key: Uint8Array, expiresAtMs: number): void {
    this.room(13 + key.length);
    this.buf[this.end++] = EXPIRY;
    this.u32(key.length);
    writeF64(this.buf, this.end, expiresAtMs);
    this.end += 8;
    this.buf.set(key, this.end);
    this.end += key.length;
    this.count++;
  }

  flush(): void {
    this.room(1);
    this.buf[this.end++] = FLUSH;
    this.count++;
  }

  /** Frames what was recorded as one EFFECTS record; returns its bytes (a view, valid until the next effect). */
  seal(): Uint8Array {
    assert(!this.empty, "only a batch with effects, or a transaction part, is sealed");
    sealFrame(this.buf, this.part ? JournalRecord.TXN_PART : JournalRecord.EFFECTS, this.end);
    return this.buf.subarray(0, this.end);
  }

  /** Starts the next batch. */
  clear(): void {
    this.end = HEADER_BYTES;
    this.count = 0;
    this.part = false;
    // A batch with a huge value grew the buffer; do not keep it forever.
    if (this.buf.length > 8 * 1024 * 1024) this.buf = new Uint8Array(64 * 1024);
  }
}

/** A TXN_PART payload's prefix: the id, the participants, and where its effects start; null if it does not parse. */
export function readPartPrefix(
  b: Uint8Array,
  start: number,
  end: number,
): { id: number; participants: number[]; effects: number } | null {
  if (start + 12 > end) return null;
  const id = readF64(b, start);
  const n = u32(b, start + 8);
  let at = start + 12 + n * 2;
  while ((at - start) % 4 !== 0) at++;
  if (at > end) return null;
  const participants: number[] = [];
  for (let i = 0; i < n; i++) participants.push(b[start + 12 + i * 2]! | (b[start + 13 + i * 2]! << 8));
  return { id, participants, effects: at };
}

function u32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

/**
 * Applies one EFFECTS payload to `core`; false when it does not parse (the
 * caller treats that as a damaged record). The version counter follows the
 * highest version set, so a key's versions never repeat after a restart.
 */
export function applyEffects(core: ShardCore, b: Uint8Array, start: number, end: number): boolean {
  const store = core.store;
  let at = start;
  while (at < end) {
    const kind = b[at]!;
    if (kind === FLUSH) {
      store.clear();
      at += 1;
      continue;
    }
    if (at + 5 > end) return false;
    const kl = u32(b, at + 1);
    if (kind === SET) {
      if (at + 25 > end) return false;
      const vl = u32(b, at + 5);
      const version = readF64(b, at + 9);
      const expiresAtMs = readF64(b, at + 17);
      const k = at + 25;
      if (k + kl + vl > end) return false;
      store.set(b.subarray(k, k + kl), b.subarray(k + kl, k + kl + vl), version, expiresAtMs);
      if (version > core.lastVersion) core.lastVersion = version;
      at = k + kl + vl;
    } else if (kind === DEL) {
      if (at + 5 + kl > end) return false;
      const slot = store.find(b.subarray(at + 5, at + 5 + kl));
      if (slot >= 0) store.deleteSlot(slot);
      at += 5 + kl;
    } else if (kind === EXPIRY) {
      if (at + 13 + kl > end) return false;
      const slot = store.find(b.subarray(at + 13, at + 13 + kl));
      if (slot >= 0) store.setExpiry(slot, readF64(b, at + 5));
      at += 13 + kl;
    } else {
      return false;
    }
  }
  return at === end;
}
