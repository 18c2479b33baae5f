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
 * Used for the hot messages, where capnp-es's per-message objects cost a
 * tenth of a loaded member's CPU (decision 0192): Raft batch frames
 * (src/cluster/peer-codec.ts), get and write requests and their answers on
 * the node (src/protocol/codec.ts) and in the client (src/client/hot-wire.ts).
 * All three have the same shape, which layoutRootAndChild and
 * readRootAndChild below lay out and read.
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

/**
 * A single-segment message laid out as our hot messages all are: the root
 * struct at word 1 (word 0 is its pointer) with `rootDataWords` data words
 * and one pointer, to the struct its union holds, placed right after it,
 * then `tailBytes` of room for that struct's lists and data. Returns the
 * fresh (zeroed) frame, segment table written, both pointers written, and
 * where each part starts.
 */
export interface RootAndChild {
  out: Uint8Array;
  seg: Segment;
  /** Byte offset of the root's data section. */
  root: number;
  /** Byte offset of the child's data section. */
  child: number;
  /** Byte offset of the child's first pointer. */
  childPtrs: number;
  /** Word index where the tail starts. */
  tail: number;
}

export function layoutRootAndChild(
  rootDataWords: number,
  childDataWords: number,
  childPointers: number,
  tailBytes: number,
  /** Where the frame's zeroed bytes come from (the node's answers: src/small-bytes.ts). */
  alloc: (bytes: number) => Uint8Array = (n) => new Uint8Array(n),
): RootAndChild {
  const childWord = 2 + rootDataWords;
  const tail = childWord + childDataWords + childPointers;
  const words = tail + Math.ceil(tailBytes / 8);
  const out = alloc(8 + words * 8);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(4, words, true); // segment table: one segment (count - 1 = 0) of `words` words
  const seg: Segment = { view, start: 8, words };
  writeStructPointer(seg, seg.start, 1, rootDataWords, 1);
  writeStructPointer(seg, seg.start + (1 + rootDataWords) * 8, childWord, childDataWords, childPointers);
  const child = seg.start + childWord * 8;
  return { out, seg, root: seg.start + 8, child, childPtrs: child + childDataWords * 8, tail };
}

/** Writes `data` as a Data field: its pointer at byte `at`, its bytes at word `word`; nothing (null) when empty. */
export function writeData(s: Segment, out: Uint8Array, at: number, word: number, data: Uint8Array): void {
  if (data.length === 0) return; // a null pointer reads as empty Data
  writeDataPointer(s, at, word, data.length);
  out.set(data, s.start + word * 8);
}

/**
 * The reading side of layoutRootAndChild: a single-segment message whose
 * root has exactly `rootDataWords` data words and one pointer. Returns the
 * root, its union's discriminant (a u16 at byte `whichAt` of its data), and
 * the struct its pointer leads to (null when that pointer is null or not a
 * plain struct pointer); null for any other shape.
 */
export function readRootAndChild(
  bytes: Uint8Array,
  rootDataWords: number,
  whichAt: number,
): { s: Segment; root: StructRef; which: number; child: StructRef | null } | null {
  const s = singleSegment(bytes);
  if (s === null) return null;
  const root = rootStruct(s);
  if (root === null || root.dataWords !== rootDataWords || root.pointers !== 1) return null;
  return { s, root, which: s.view.getUint16(root.data + whichAt, true), child: readStruct(s, pointerAt(root, 0)) };
}
