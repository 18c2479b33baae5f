/**
 * mput and txn requests read by hand (decision 0317): the same Operation
 * decodeRequestGeneric (codec.ts) makes of them, without capnp-es; and their
 * answers (`versions`; `txn` when its branch holds only puts and deletes)
 * laid out by hand.
 *
 * Why: through capnp-es, every list element and every field read is a new
 * object (a Pointer, a Struct, a Proxy around each list), and a txn of ten
 * puts, MSET's native request, spent half of the node's time for it in the
 * decoder (docs/benchmarks.md, "the native port's hot path"). Here the
 * lists are walked with the pointer rules of capnp-words.ts on bytes.
 *
 * Like hot-codec.ts, this reader is only ever right about what it accepts:
 * one segment, the Request, MultiPut, KeyValue, Txn, TxnCompare, TxnOp,
 * Write and Key structs exactly the sizes this schema writes (a Txn also
 * the size it had before verdictOnly), composite lists inside the segment,
 * and a request the node accepts as it is (every key, value, time, target,
 * relation, op and limit valid). Anything else
 * returns null, and decodeRequest's general path decodes it, and words its
 * refusal. The fuzz tests hold the two to the same Operation
 * (test/protocol/fuzz.test.ts).
 */
import { MAX_BATCH_KEYS, MAX_KEY_BYTES, MAX_TTL_MS, TXN_MAX_BYTES, TXN_MAX_OPS } from "../limits.js";
import { FLAG_KEEP_TTL, Op } from "../shard/command.js";
import type { TxnCompare, TxnOp } from "../shard/txn.js";
import { smallBytes } from "../small-bytes.js";
import { blankOperation, type DecodedTxn, type Operation, type PartResult, RELATIONS, TARGETS } from "./codec.js";
import {
  Request_Which,
  Response_Which,
  TxnOp_Which,
  TxnOpResult_Which,
  CompareTarget as WireTarget,
} from "./gen/piccolo.js";
import { dataAt, putU32, putU64, structAt, u32, u64 } from "./hot-codec.js";

/** A composite list's elements: where the first starts (byte offset), how many, and each one's size in words. */
interface ListAt {
  at: number;
  count: number;
  stride: number;
}

const NO_LIST: ListAt = { at: 0, count: 0, stride: 0 };

/**
 * The composite list (of structs of exactly `dataWords` and `pointers`)
 * whose pointer is at byte `at`: NO_LIST for a null pointer; null when it is
 * not such a list inside the segment of `words` words starting at byte 8.
 */
function listAt(b: Uint8Array, at: number, words: number, dataWords: number, pointers: number): ListAt | null {
  const lo = u32(b, at);
  const hi = u32(b, at + 4);
  if (lo === 0 && hi === 0) return NO_LIST;
  if ((lo & 3) !== 1 || (hi & 7) !== 7) return null; // a list pointer, of inline composite elements
  const tagWord = (at - 8) / 8 + 1 + (lo >> 2);
  const listWords = hi >>> 3;
  if (tagWord < 0 || tagWord + 1 + listWords > words) return null;
  const tagAt = 8 + tagWord * 8;
  const tagLo = u32(b, tagAt);
  const tagHi = u32(b, tagAt + 4);
  if ((tagLo & 3) !== 0 || (tagHi & 0xffff) !== dataWords || tagHi >>> 16 !== pointers) return null;
  const count = tagLo >>> 2;
  const stride = dataWords + pointers;
  if (count * stride > listWords) return null;
  return { at: tagAt + 8, count, stride: stride * 8 };
}

const validKey = (k: Uint8Array | null): k is Uint8Array => k !== null && k.length > 0 && k.length <= MAX_KEY_BYTES;

/** An mput or txn request as decodeRequestGeneric would decode it; null for anything else (see the file comment). */
export function decodeListRequest(b: Uint8Array, maxValueBytes: number): Operation | null {
  if (b.length < 16 || b.length % 8 !== 0 || u32(b, 0) !== 0) return null;
  const words = u32(b, 4);
  if (words * 8 !== b.length - 8) return null;
  const root = structAt(b, 8, words, 2, 1);
  if (root < 0) return null;
  const rootAt = 8 + root * 8;
  const kind = b[rootAt + 8]! | (b[rootAt + 9]! << 8);
  if (kind !== Request_Which.MPUT && kind !== Request_Which.TXN) return null;
  // A Txn has 1 data word (verdictOnly) since that field was added; a client built before it writes none.
  let txnData = 1;
  let arg = -1;
  if (kind === Request_Which.MPUT) arg = structAt(b, rootAt + 16, words, 1, 1);
  else {
    arg = structAt(b, rootAt + 16, words, 1, 3);
    if (arg < 0) arg = structAt(b, rootAt + 16, words, (txnData = 0), 3);
  }
  if (arg < 0) return null;
  const argAt = 8 + arg * 8;
  const op = blankOperation(new DataView(b.buffer, b.byteOffset + rootAt, 8).getBigUint64(0, true), kind);
  op.stale = (b[rootAt + 10]! & 1) !== 0;
  op.trace = (b[rootAt + 10]! & 2) !== 0;
  return kind === Request_Which.MPUT
    ? readMput(b, words, argAt, op, maxValueBytes)
    : readTxn(b, words, argAt + txnData * 8, txnData === 1 && (b[argAt]! & 1) !== 0, op, maxValueBytes);
}

/** MultiPut: 1 data word (ttlMs), 1 pointer (entries: KeyValue, 0 data words and 2 pointers). */
function readMput(b: Uint8Array, words: number, at: number, op: Operation, maxValueBytes: number): Operation | null {
  const ttlMs = u64(b, at);
  if (ttlMs < 0 || ttlMs > MAX_TTL_MS) return null;
  const list = listAt(b, at + 8, words, 0, 2);
  if (list === null || list.count === 0 || list.count > MAX_BATCH_KEYS) return null;
  op.ttlMs = ttlMs;
  for (let i = 0, e = list.at; i < list.count; i++, e += list.stride) {
    const key = dataAt(b, e, words);
    const value = dataAt(b, e + 8, words);
    if (!validKey(key) || value === null || value.length > maxValueBytes) return null;
    op.keys.push(key);
    op.values.push(value);
  }
  return op;
}

/**
 * Txn: 1 data word (verdictOnly at bit 0; none from clients older than that
 * field), 3 pointers (compares, success, failure) from byte `at`. TxnCompare: 2
 * data words (target u16 at 0, relation u16 at 2, version u64 at 8), 2
 * pointers (key, value). TxnOp: 1 data word (its union's discriminant at 0),
 * 1 pointer: a Write (3 data words: ttlMs, expireAtMs, keepTtl at bit 128; 2
 * pointers: key, value) or a Key (0 data words, 1 pointer).
 */
function readTxn(
  b: Uint8Array,
  words: number,
  at: number,
  verdictOnly: boolean,
  op: Operation,
  maxValueBytes: number,
): Operation | null {
  const compares = listAt(b, at, words, 2, 2);
  const success = listAt(b, at + 8, words, 1, 1);
  const failure = listAt(b, at + 16, words, 1, 1);
  if (compares === null || success === null || failure === null) return null;
  if (compares.count + success.count + failure.count > TXN_MAX_OPS) return null;
  const out: DecodedTxn = { compares: [], success: [], failure: [], successTtlMs: [], failureTtlMs: [], verdictOnly };
  let bytes = 0;
  for (let i = 0, e = compares.at; i < compares.count; i++, e += compares.stride) {
    const key = dataAt(b, e + 16, words);
    const target = TARGETS[b[e]! | (b[e + 1]! << 8)];
    const relation = RELATIONS[b[e + 2]! | (b[e + 3]! << 8)];
    const version = u64(b, e + 8);
    if (!validKey(key) || target === undefined || relation === undefined || version < 0) return null;
    let value: Uint8Array | null = null;
    if (target === TARGETS[WireTarget.VALUE]) {
      value = dataAt(b, e + 24, words);
      if (value === null || value.length > maxValueBytes) return null;
    }
    bytes += key.length + (value?.length ?? 0);
    if (bytes > TXN_MAX_BYTES) return null;
    const c: TxnCompare = { key, target, relation, number: version, value };
    out.compares.push(c);
  }
  for (const [list, ops, ttls] of [
    [success, out.success, out.successTtlMs],
    [failure, out.failure, out.failureTtlMs],
  ] as const) {
    for (let i = 0, e = list.at; i < list.count; i++, e += list.stride) {
      const which = b[e]! | (b[e + 1]! << 8);
      const isPut = which === TxnOp_Which.PUT;
      if (!isPut && which !== TxnOp_Which.DELETE && which !== TxnOp_Which.GET) return null;
      const s = structAt(b, e + 8, words, isPut ? 3 : 0, isPut ? 2 : 1);
      if (s < 0) return null;
      const sAt = 8 + s * 8;
      const key = dataAt(b, sAt + (isPut ? 24 : 0), words);
      if (!validKey(key)) return null;
      let value: Uint8Array | null = null;
      let flags = 0;
      let ttlMs = 0;
      let expireAtMs = 0;
      if (isPut) {
        value = dataAt(b, sAt + 32, words);
        ttlMs = u64(b, sAt);
        expireAtMs = u64(b, sAt + 8);
        if (value === null || value.length > maxValueBytes || ttlMs < 0 || ttlMs > MAX_TTL_MS || expireAtMs < 0)
          return null;
        if ((b[sAt + 16]! & 1) !== 0) flags = FLAG_KEEP_TTL;
      }
      bytes += key.length + (value?.length ?? 0);
      if (bytes > TXN_MAX_BYTES) return null;
      const cmd = isPut ? Op.PUT : which === TxnOp_Which.GET ? Op.GET : Op.DELETE;
      const o: TxnOp = { op: cmd, flags, expireAtMs, arg0: 0, arg1: 0, key, value };
      ops.push(o);
      ttls.push(ttlMs);
    }
  }
  op.txn = out;
  return op;
}

/**
 * A Response of `words` words after its segment table: the root (3 data
 * words: id, the union's discriminant `which`) at word 1, its pointer at
 * word 4, what it points to from word 5 on. Zeroed, table and root written.
 */
function response(id: bigint, which: number, words: number): Uint8Array {
  const out = smallBytes(8 + words * 8);
  putU32(out, 4, words);
  out[12] = 3; // root pointer: offset 0, 3 data words, 1 pointer
  out[14] = 1;
  putU32(out, 16, Number(id & 0xffffffffn));
  putU32(out, 20, Number(id >> 32n));
  out[24] = which;
  out[25] = which >>> 8;
  return out;
}

/** mput's answer: `versions`, a List(UInt64) in request order (each part's version). */
export function encodeVersions(id: bigint, parts: readonly PartResult[]): Uint8Array {
  const n = parts.length;
  const out = response(id, Response_Which.VERSIONS, 5 + n);
  // The list pointer at word 4, to word 5 right after it: offset 0, 8-byte elements (size 5), n of them.
  out[40] = 1;
  putU32(out, 44, n * 8 + 5);
  for (let i = 0; i < n; i++) putU64(out, 48 + i * 8, parts[i]!.version);
  return out;
}

/**
 * A txn's answer when every op of the branch that ran is a put or a delete
 * (MSET's: ten puts); null otherwise (a get's Value goes through capnp-es:
 * codec.ts's encodeTxn). `ops[i]` is op i's shard command, `results[i]` its result.
 *
 *   word 4     pointer to the TxnResult at word 5 (1 data word: succeeded; 1 pointer)
 *   word 6     pointer to the results: a composite list, its tag at word 7
 *   word 8+2i  result i: a data word (discriminant u16 at 0; a delete's Bool at bit 16) and a pointer,
 *              for a put to its Written (2 data words: version, created at bit 64) placed after the list
 */
export function encodeTxnPutsAndDeletes(
  id: bigint,
  succeeded: boolean,
  ops: readonly number[],
  results: readonly PartResult[],
): Uint8Array | null {
  const n = ops.length;
  let puts = 0;
  for (const o of ops) {
    if (o === Op.PUT) puts++;
    else if (o !== Op.DELETE) return null;
  }
  const out = response(id, Response_Which.TXN, 8 + 2 * n + 2 * puts);
  out[44] = 1; // word 4: the TxnResult at word 5, offset 0, 1 data word and 1 pointer
  out[46] = 1;
  if (succeeded) out[48] = 1;
  out[56] = 1; // word 6: a list pointer to word 7, offset 0, inline composite (7) of 2n words
  putU32(out, 60, 2 * n * 8 + 7);
  putU32(out, 64, n * 4); // word 7, the tag: n elements of 1 data word and 1 pointer
  out[68] = 1;
  out[70] = 1;
  let written = 8 + 2 * n; // the next Written's word
  for (let i = 0; i < n; i++) {
    const e = 8 + (8 + 2 * i) * 8;
    const p = results[i]!;
    if (ops[i] === Op.DELETE) {
      out[e] = TxnOpResult_Which.DELETE;
      if (p.flag === 1) out[e + 2] = 1;
      continue;
    }
    // TxnOpResult_Which.PUT is 0: the zeroed discriminant. Its pointer (word 9+2i) to the Written.
    putU32(out, e + 8, (written - (10 + 2 * i)) * 4);
    out[e + 12] = 2;
    const w = 8 + written * 8;
    putU64(out, w, p.version);
    if (p.flag === 0) out[w + 8] = 1; // created: the shard's flag is 1 when the put replaced a key
    written += 2;
  }
  return out;
}
