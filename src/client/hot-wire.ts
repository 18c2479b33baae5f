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
 *   Request   2 data words (id at byte 0, the union's discriminant at 8, stale at bit 80, trace at 81), 1 pointer
 *   Key       1 pointer (key)
 *   Write     3 data words (ttlMs at 0, expireAtMs at 8, keepTtl at bit 128), 2 pointers (key, value)
 *   Response  3 data words (id at 0, discriminant at 8), 1 pointer
 *   Value     3 data words (found at bit 0, version at 8, expireAtMs at 16), 1 pointer (value)
 *   Written   2 data words (version at 0, created at bit 64)
 */
import {
  layoutRootAndChild,
  pointerAt,
  readData,
  readRootAndChild,
  rootStruct,
  singleSegment,
  writeData,
} from "../protocol/capnp-words.js";
import { Request_Which, Response_Which } from "../protocol/gen/piccolo.js";

const words = (bytes: number): number => Math.ceil(bytes / 8);

/** A Request (2 data words: id at byte 0, discriminant at 8, stale at bit 80) holding a struct. */
function request(id: number, which: number, dataWords: number, pointers: number, tailBytes: number) {
  const r = layoutRootAndChild(2, dataWords, pointers, tailBytes);
  r.seg.view.setBigUint64(r.root, BigInt(id), true);
  r.seg.view.setUint16(r.root + 8, which, true);
  return r;
}

export function encodeGetRequest(id: number, key: Uint8Array, stale: boolean, trace = false): Uint8Array {
  const { out, seg, root, childPtrs, tail } = request(id, Request_Which.GET, 0, 1, key.length);
  // stale: bit 80 of the Request's data; trace: bit 81
  if (stale || trace) seg.view.setUint8(root + 10, (stale ? 1 : 0) | (trace ? 2 : 0));
  writeData(seg, out, childPtrs, tail, key);
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
  trace = false,
): Uint8Array {
  const w = request(id, kind, 3, 2, words(key.length) * 8 + value.length);
  if (trace) w.seg.view.setUint8(w.root + 10, 2); // bit 81 of the Request's data
  w.seg.view.setBigUint64(w.child, BigInt(ttlMs), true);
  w.seg.view.setBigUint64(w.child + 8, BigInt(expireAtMs), true);
  if (keepTtl) w.seg.view.setUint8(w.child + 16, 1);
  writeData(w.seg, w.out, w.childPtrs, w.tail, key);
  writeData(w.seg, w.out, w.childPtrs + 8, w.tail + words(key.length), value);
  return w.out;
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
  const u = readRootAndChild(new Uint8Array(frame), 3, 8);
  if (u === null || u.which !== which) return null;
  const r = u.child;
  if (r === null || r.dataWords !== dataWords || r.pointers !== pointers) return null;
  return { s: u.s, r };
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
