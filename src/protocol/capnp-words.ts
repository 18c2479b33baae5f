/**
 * The few Cap'n Proto pointer rules a hand-written hot path needs, straight
 * from the encoding spec (capnproto.org/encoding.html), for single-segment
 * messages only:
 *
 *   struct pointer   bits 0-1 = 0, bits 2-31 signed offset in words from the
 *                    end of the pointer, bits 32-47 data words, 48-63 pointers
 *   list pointer     bits 0-1 = 1, bits 2-31 offset, bits 32-34 element size
 *                    (2 = one byte: Data and Text), bits 35-63 element count
 *   null             all 64 bits zero
 *
 * Everything else (far pointers, several segments, other element sizes)
 * makes a reader return null, "not the simple shape": the caller then hands
 * the frame to capnp-es, which handles every valid message and refuses
 * every invalid one. So these helpers never have to be complete, only right
 * about what they accept, and every position they return lies inside the
 * segment.
 *
 * Used by src/cluster/peer-codec.ts for the Raft batch frames, the bulk of
 * peer traffic, where capnp-es's per-message objects cost a tenth of a
 * loaded member's CPU (decision 0192).
 */

/** A single-segment message: its words, as a view, and the byte offset where the segment starts. */
export interface Segment {
  view: DataView;
  /** Byte offset of word 0 in `view`. */
  start: number;
  /** Segment length in words. */
  words: number;
}

/** The one segment of a framed message (segment table included), or null if it has several or lies. */
export function singleSegment(bytes: Uint8Array): Segment | null {
  if (bytes.length < 16 || bytes.length % 8 !== 0) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== 0) return null; // segment count - 1
  const words = view.getUint32(4, true);
  if (words * 8 !== bytes.length - 8) return null;
  return { view, start: 8, words };
}

/** A struct's location: byte offset of its data section, its sizes in words and pointers. */
export interface StructRef {
  data: number;
  dataWords: number;
  pointers: number;
  /** Byte offset of its first pointer. */
  ptrs: number;
}

function pointerWord(s: Segment, at: number): { lo: number; hi: number } {
  return { lo: s.view.getUint32(at, true), hi: s.view.getUint32(at + 4, true) };
}

/** The word index just past byte offset `at`'s pointer, plus a signed offset. */
function target(s: Segment, at: number, lo: number): number {
  return (at - s.start) / 8 + 1 + (lo >> 2);
}

/**
 * The struct a pointer at byte offset `at` points to; null when the pointer
 * is null, not a plain struct pointer, or points outside the segment.
 */
export function readStruct(s: Segment, at: number): StructRef | null {
  const { lo, hi } = pointerWord(s, at);
  if ((lo & 3) !== 0 || (lo === 0 && hi === 0)) return null;
  const word = target(s, at, lo);
  const dataWords = hi & 0xffff;
  const pointers = hi >>> 16;
  if (word < 0 || word + dataWords + pointers > s.words) return null;
  const data = s.start + word * 8;
  return { data, dataWords, pointers, ptrs: data + dataWords * 8 };
}

/** The root struct (the pointer in word 0). */
export function rootStruct(s: Segment): StructRef | null {
  return readStruct(s, s.start);
}

/** Byte offset of pointer `i` of struct `r`, or -1 when the struct has fewer (a null pointer, by the spec). */
export function pointerAt(r: StructRef, i: number): number {
  return i < r.pointers ? r.ptrs + i * 8 : -1;
}

/** Whether the pointer at `at` (or an absent one, -1) is null. */
export function isNullPointer(s: Segment, at: number): boolean {
  return at < 0 || (s.view.getUint32(at, true) === 0 && s.view.getUint32(at + 4, true) === 0);
}

/**
 * The bytes of a Data field whose pointer is at `at`: an empty view for a
 * null (or absent) pointer; null when it is not a byte list inside the segment.
 */
export function readData(s: Segment, at: number): Uint8Array | null {
  if (isNullPointer(s, at)) return new Uint8Array(0);
  const { lo, hi } = pointerWord(s, at);
  if ((lo & 3) !== 1 || (hi & 7) !== 2) return null;
  const word = target(s, at, lo);
  const count = hi >>> 3;
  if (word < 0 || word * 8 + count > s.words * 8) return null;
  const from = s.view.byteOffset + s.start + word * 8;
  return new Uint8Array(s.view.buffer, from, count);
}

/** Writes a struct pointer at byte `at` to a struct starting at word `word` (both in the same segment). */
export function writeStructPointer(s: Segment, at: number, word: number, dataWords: number, pointers: number): void {
  const offset = word - ((at - s.start) / 8 + 1);
  s.view.setUint32(at, (offset << 2) >>> 0, true);
  s.view.setUint32(at + 4, (dataWords | (pointers << 16)) >>> 0, true);
}

/** Writes a Data (byte list) pointer at byte `at` to `count` bytes starting at word `word`. */
export function writeDataPointer(s: Segment, at: number, word: number, count: number): void {
  const offset = word - ((at - s.start) / 8 + 1);
  s.view.setUint32(at, ((offset << 2) | 1) >>> 0, true);
  s.view.setUint32(at + 4, ((count << 3) | 2) >>> 0, true);
}
