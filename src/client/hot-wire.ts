/**
 * The client's side of the hot path, by hand (decision 0192): get and write
 * requests laid out as single-segment Cap'n Proto messages, and their
 * answers (`Value`, `Written`) read back, without capnp-es's objects. The
 * Cerializer relays every HTTP request through these, so they are most of
 * its Cap'n Proto work.
 *
 * The requests are exactly what capnp-es would write for the same fields
 * (tested: capnp-es reads them back). A reader returns null for anything but
 * the exact shape the node writes for a successful answer, errors included:
 * the caller then decodes the frame with capnp-es, which raises the error.
 *
 * Layouts, from the generated code (src/protocol/gen/piccolo.ts):
 *   Request   2 data words (id at byte 0, the union's discriminant at 8, stale at bit 80), 1 pointer
 *   Key       1 pointer (key)
 *   Write     3 data words (ttlMs at 0, expireAtMs at 8, keepTtl at bit 128), 2 pointers (key, value)
 *   Response  3 data words (id at 0, discriminant at 8), 1 pointer
 *   Value     3 data words (found at bit 0, version at 8, expireAtMs at 16), 1 pointer (value)
 *   Written   2 data words (version at 0, created at bit 64)
 */
import {
  pointerAt,
  readData,
  readStruct,
  rootStruct,
  type Segment,
  singleSegment,
  writeDataPointer,
  writeStructPointer,
} from "../protocol/capnp-words.js";
import { Request_Which, Response_Which } from "../protocol/gen/piccolo.js";

const words = (bytes: number): number => Math.ceil(bytes / 8);

/** A Request whose union holds a struct of `dataWords` and `pointers` at word 4, `tail` bytes after it. */
function request(
  id: number,
  which: number,
  dataWords: number,
  pointers: number,
  tail: number,
): { out: Uint8Array; seg: Segment; at: number } {
  const total = 4 + dataWords + pointers + words(tail);
  const out = new Uint8Array(8 + total * 8);
  const view = new DataView(out.buffer);
  view.setUint32(4, total, true); // one segment
  const seg: Segment = { view, start: 8, words: total };
  writeStructPointer(seg, 8, 1, 2, 1);
  view.setBigUint64(16, BigInt(id), true);
  view.setUint16(24, which, true);
  writeStructPointer(seg, 32, 4, dataWords, pointers);
  return { out, seg, at: 40 };
}

/** Writes `data` as a Data field: pointer at byte `ptr`, bytes at word `word`. */
function putData(out: Uint8Array, seg: Segment, ptr: number, word: number, data: Uint8Array): void {
  if (data.length === 0) return; // a null pointer reads as empty Data
  writeDataPointer(seg, ptr, word, data.length);
  out.set(data, seg.start + word * 8);
}

export function encodeGetRequest(id: number, key: Uint8Array, stale: boolean): Uint8Array {
  const { out, seg, at } = request(id, Request_Which.GET, 0, 1, key.length);
  if (stale) seg.view.setUint8(8 + 8 + 10, 1); // Request's data at byte 16 of the frame; stale is bit 80
  putData(out, seg, at, 5, key);
  return out;
}

export type WriteKind = typeof Request_Which.PUT | typeof Request_Which.INSERT | typeof Request_Which.UPDATE;

export function encodeWriteRequest(
  id: number,
  kind: WriteKind,
  key: Uint8Array,
  value: Uint8Array,
  ttlMs: number,
  expireAtMs: number,
  keepTtl: boolean,
): Uint8Array {
  const { out, seg, at } = request(id, kind, 3, 2, words(key.length) * 8 + value.length);
  seg.view.setBigUint64(at, BigInt(ttlMs), true);
  seg.view.setBigUint64(at + 8, BigInt(expireAtMs), true);
  if (keepTtl) seg.view.setUint8(at + 16, 1);
  putData(out, seg, at + 24, 9, key);
  putData(out, seg, at + 32, 9 + words(key.length), value);
  return out;
}

/** A response's id, read by hand when the frame has the simple shape; null otherwise. */
export function responseId(frame: ArrayBuffer): number | null {
  const s = singleSegment(new Uint8Array(frame));
  const root = s === null ? null : rootStruct(s);
  if (s === null || root === null || root.dataWords < 1) return null;
  const id = s.view.getBigUint64(root.data, true);
  return id <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(id) : null;
}

/** The struct in a simple Response's union when it is `which` with exactly these sizes; else null. */
function answer(frame: ArrayBuffer, which: number, dataWords: number, pointers: number) {
  const s = singleSegment(new Uint8Array(frame));
  if (s === null) return null;
  const root = rootStruct(s);
  if (root === null || root.dataWords !== 3 || root.pointers !== 1) return null;
  if (s.view.getUint16(root.data + 8, true) !== which) return null;
  const r = readStruct(s, pointerAt(root, 0));
  if (r === null || r.dataWords !== dataWords || r.pointers !== pointers) return null;
  return { s, r };
}

/** A Written answer's version and created flag; null when the frame is anything else (an error too). */
export function readWritten(frame: ArrayBuffer): { version: number; created: boolean } | null {
  const a = answer(frame, Response_Which.WRITTEN, 2, 0);
  if (a === null) return null;
  return {
    version: Number(a.s.view.getBigUint64(a.r.data, true)),
    created: (a.s.view.getUint8(a.r.data + 8) & 1) !== 0,
  };
}

/**
 * A Value answer: found, or not (`null` inside); null when the frame is
 * anything else. The value is a view into the frame, which is this
 * response's own buffer (src/protocol/framing.ts copies each frame once).
 */
export function readValue(
  frame: ArrayBuffer,
): { entry: { value: Buffer; version: number; expireAtMs: number } | null } | null {
  const a = answer(frame, Response_Which.VALUE, 3, 1);
  if (a === null) return null;
  const v = a.s.view;
  if ((v.getUint8(a.r.data) & 1) === 0) return { entry: null };
  const value = readData(a.s, pointerAt(a.r, 0));
  if (value === null) return null;
  return {
    entry: {
      value: Buffer.from(value.buffer, value.byteOffset, value.byteLength),
      version: Number(v.getBigUint64(a.r.data + 8, true)),
      expireAtMs: Number(v.getBigUint64(a.r.data + 16, true)),
    },
  };
}
