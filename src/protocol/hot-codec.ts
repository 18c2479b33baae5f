/**
 * The node's hottest requests, get and put (with insert and update), read
 * and answered by byte arithmetic alone: no Operation, no DataView, no BigInt
 * (decision 0316).
 *
 * Why beside decodeSimpleRequest (codec.ts), which already reads these by
 * hand: that one still builds the general Operation (an object with four
 * arrays), a BigInt id, a DataView and a few small objects per request, and
 * its answers go through a DataView and BigInts again. At `-P 16` those were
 * most of the extra microsecond a native request cost the node over a Redis
 * one (docs/benchmarks.md, "the native port's hot path"). Here a request is
 * read into one reusable scratch object (HOT), its id is never decoded (the
 * answer copies its 8 bytes from the request frame), and the answers are
 * written byte by byte into memory carved from the shared blocks
 * (src/small-bytes.ts).
 *
 * What it accepts is exactly what decodeSimpleRequest accepts *and* finds
 * valid: one segment, a Request of 2 data words and 1 pointer whose union
 * is get/put/insert/update, a Key of 0 data words and 1 pointer or a Write
 * of 3 data words and 2 pointers, Data pointers inside the segment, a key of
 * 1..MAX_KEY_BYTES, a value within the limit, times within range, and no
 * `trace` bit (a traced request takes the general path: docs/tracing.md). Anything
 * else returns false, and the caller takes the general path (decodeRequest),
 * which answers every refusal with its code and message. Tests hold the two
 * to agreeing (test/protocol/fuzz.test.ts).
 */
import { MAX_KEY_BYTES, MAX_TTL_MS } from "../limits.js";
import { smallBytes } from "../small-bytes.js";
import { Request_Which, Response_Which } from "./gen/piccolo.js";

/** A hot request as read: views into the frame, numbers as numbers. Overwritten by every readHot(). */
export interface HotFields {
  kind: number;
  /** Byte offset of the request's id (8 bytes, little-endian) in the frame: the answer copies it. */
  idAt: number;
  key: Uint8Array;
  value: Uint8Array;
  ttlMs: number;
  expireAtMs: number;
  keepTtl: boolean;
  stale: boolean;
}

const EMPTY = new Uint8Array(0);

/** The scratch object readHot() fills (one per process: the IO thread reads one frame at a time). */
export const HOT: HotFields = {
  kind: 0,
  idAt: 0,
  key: EMPTY,
  value: EMPTY,
  ttlMs: 0,
  expireAtMs: 0,
  keepTtl: false,
  stale: false,
};

export const u32 = (b: Uint8Array, at: number): number =>
  (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

const TWO_32 = 2 ** 32;
/** A u64 above this high word is past Number.MAX_SAFE_INTEGER. */
const SAFE_HIGH_MAX = 2 ** 21 - 1;

/**
 * The struct a pointer at byte `at` leads to, as the word index of its data
 * section, when it is a plain struct pointer inside the segment of `words`
 * words that starts at byte 8 and has exactly `dataWords` and `pointers`;
 * else -1. (The rules of capnp-words.ts's readStruct, on bytes.)
 */
export function structAt(b: Uint8Array, at: number, words: number, dataWords: number, pointers: number): number {
  const lo = u32(b, at);
  const hi = u32(b, at + 4);
  if ((lo & 3) !== 0 || (lo === 0 && hi === 0)) return -1;
  if ((hi & 0xffff) !== dataWords || hi >>> 16 !== pointers) return -1;
  const word = (at - 8) / 8 + 1 + (lo >> 2);
  if (word < 0 || word + dataWords + pointers > words) return -1;
  return word;
}

/** The bytes of a Data field whose pointer is at byte `at`: empty for a null pointer; null when not a byte list inside the segment. */
export function dataAt(b: Uint8Array, at: number, words: number): Uint8Array | null {
  const lo = u32(b, at);
  const hi = u32(b, at + 4);
  if (lo === 0 && hi === 0) return EMPTY;
  if ((lo & 3) !== 1 || (hi & 7) !== 2) return null;
  const word = (at - 8) / 8 + 1 + (lo >> 2);
  const count = hi >>> 3;
  if (word < 0 || word * 8 + count > words * 8) return null;
  return b.subarray(8 + word * 8, 8 + word * 8 + count);
}

/** A u64 at `at` as a number; -1 when it is past Number.MAX_SAFE_INTEGER. */
export function u64(b: Uint8Array, at: number): number {
  const hi = u32(b, at + 4);
  return hi > SAFE_HIGH_MAX ? -1 : hi * TWO_32 + u32(b, at);
}

/**
 * Reads a get, put, insert or update request into HOT; false for any other
 * request, any other shape, or one the node would refuse (see the file comment).
 */
export function readHot(b: Uint8Array, maxValueBytes: number): boolean {
  if (b.length < 16 || b.length % 8 !== 0 || u32(b, 0) !== 0) return false;
  const words = u32(b, 4);
  if (words * 8 !== b.length - 8) return false;
  const root = structAt(b, 8, words, 2, 1);
  if (root < 0) return false;
  const rootAt = 8 + root * 8;
  const kind = b[rootAt + 8]! | (b[rootAt + 9]! << 8);
  const isWrite = kind === Request_Which.PUT || kind === Request_Which.INSERT || kind === Request_Which.UPDATE;
  if (kind !== Request_Which.GET && !isWrite) return false;
  const arg = structAt(b, rootAt + 16, words, isWrite ? 3 : 0, isWrite ? 2 : 1);
  if (arg < 0) return false;
  const argAt = 8 + arg * 8;
  const ptrs = argAt + (isWrite ? 24 : 0);
  const key = dataAt(b, ptrs, words);
  if (key === null || key.length === 0 || key.length > MAX_KEY_BYTES) return false;
  // A traced request (`trace`, bit 81) takes the general path: one test here is all tracing costs when off.
  if ((b[rootAt + 10]! & 2) !== 0) return false;
  const h = HOT;
  h.kind = kind;
  h.idAt = rootAt;
  h.key = key;
  h.stale = (b[rootAt + 10]! & 1) !== 0;
  if (!isWrite) {
    h.value = EMPTY;
    h.ttlMs = 0;
    h.expireAtMs = 0;
    h.keepTtl = false;
    return true;
  }
  const value = dataAt(b, ptrs + 8, words);
  if (value === null || value.length > maxValueBytes) return false;
  const ttlMs = u64(b, argAt);
  const expireAtMs = u64(b, argAt + 8);
  if (ttlMs < 0 || ttlMs > MAX_TTL_MS || expireAtMs < 0) return false;
  h.value = value;
  h.ttlMs = ttlMs;
  h.expireAtMs = expireAtMs;
  h.keepTtl = (b[argAt + 16]! & 1) !== 0;
  return true;
}

export function putU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v;
  out[at + 1] = v >>> 8;
  out[at + 2] = v >>> 16;
  out[at + 3] = v >>> 24;
}

/** A non-negative safe integer as a little-endian u64. */
export function putU64(out: Uint8Array, at: number, v: number): void {
  putU32(out, at, v >>> 0);
  putU32(out, at + 4, Math.floor(v / TWO_32));
}

/**
 * The start of every hot answer, as codec.ts's simpleResponse lays it out,
 * at byte `at` of `out` (zeroed there): the segment table (one segment of
 * `words` words), the root pointer, a Response of 3 data words (the id, its
 * 8 bytes copied from `id` at `idAt`, and the union's discriminant) and its
 * pointer to the child struct right after it.
 */
function header(
  out: Uint8Array,
  at: number,
  id: Uint8Array,
  idAt: number,
  words: number,
  which: number,
  childData: number,
  childPtrs: number,
): void {
  putU32(out, at + 4, words);
  out[at + 12] = 3; // root pointer: offset 0, 3 data words, 1 pointer
  out[at + 14] = 1;
  for (let i = 0; i < 8; i++) out[at + 16 + i] = id[idAt + i]!;
  out[at + 24] = which;
  out[at + 25] = which >>> 8;
  out[at + 44] = childData; // the child's pointer (at byte 40): offset 0, its sizes
  out[at + 46] = childPtrs;
}

/** The size of a Written answer. */
export const HOT_WRITTEN_BYTES = 64;

/**
 * Written: 2 data words (version, created at bit 64), no pointers; laid out
 * at `at` of `out` (zeroed there), the id from `id` at `idAt`. Returns where it ends.
 */
export function hotWrittenAt(
  out: Uint8Array,
  at: number,
  id: Uint8Array,
  idAt: number,
  version: number,
  created: boolean,
): number {
  header(out, at, id, idAt, 7, Response_Which.WRITTEN, 2, 0);
  putU64(out, at + 48, version);
  if (created) out[at + 56] = 1;
  return at + HOT_WRITTEN_BYTES;
}

/** A Written answer of its own, the id copied from the request's frame. */
export function hotWritten(frame: Uint8Array, idAt: number, version: number, created: boolean): Uint8Array {
  const out = smallBytes(HOT_WRITTEN_BYTES); // zeroed
  hotWrittenAt(out, 0, frame, idAt, version, created);
  return out;
}

/** The size of a Value answer: 10 words, and the value's bytes rounded up to a word. */
export function hotValueBytes(found: boolean, value: Uint8Array | null): number {
  return 80 + (found && value !== null ? Math.ceil(value.length / 8) * 8 : 0);
}

/**
 * Value: 3 data words (found at bit 0, version, expireAtMs) and the value's
 * Data pointer, the bytes after it; laid out at `at` of `out` (zeroed there,
 * hotValueBytes long), the id from `id` at `idAt`. Returns where it ends.
 */
export function hotValueAt(
  out: Uint8Array,
  at: number,
  id: Uint8Array,
  idAt: number,
  found: boolean,
  version: number,
  expireAtMs: number,
  value: Uint8Array | null,
): number {
  const v = found && value !== null ? value : EMPTY;
  header(out, at, id, idAt, 9 + Math.ceil(v.length / 8), Response_Which.VALUE, 3, 1);
  if (found) {
    out[at + 48] = 1;
    putU64(out, at + 56, version);
    putU64(out, at + 64, expireAtMs);
  }
  if (v.length > 0) {
    // The Data pointer at byte 72 (word 8 of the segment), to word 9 right after it: offset 0, bytes, count.
    out[at + 72] = 1;
    putU32(out, at + 76, v.length * 8 + 2);
    out.set(v, at + 80);
  }
  return at + hotValueBytes(found, value);
}

/** A Value answer of its own, the id copied from the request's frame. */
export function hotValue(
  frame: Uint8Array,
  idAt: number,
  found: boolean,
  version: number,
  expireAtMs: number,
  value: Uint8Array | null,
): Uint8Array {
  const out = smallBytes(hotValueBytes(found, value)); // zeroed
  hotValueAt(out, 0, frame, idAt, found, version, expireAtMs, value);
  return out;
}
