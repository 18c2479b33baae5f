/**
 * Between Cap'n Proto messages and Piccolo's operations.
 *
 * decodeRequest() reads a framed Request with the generated capnp-es code and
 * validates it against the node's limits, giving the IO loop a plain
 * Operation: what to do and on which keys (views into the frame, no copies).
 * encodeResponse() builds the framed Response. Both sides of the wire use
 * this file: the node, and the client (which encodes Requests and decodes
 * Responses with the helpers at the bottom).
 *
 * Nothing here knows about sockets or shards.
 */
import type { SlowEntry, TraceOut } from "./trace-shapes.js";
import * as capnp from "capnp-es";
import { ErrorCode } from "../errors.js";
import { MAX_BATCH_KEYS, MAX_KEY_BYTES, MAX_TTL_MS, TXN_MAX_BYTES, TXN_MAX_OPS } from "../limits.js";
import { outcomeOf } from "../outcomes.js";
import { FLAG_KEEP_TTL, Op, type ResultFields } from "../shard/command.js";
import { CompareRelation, CompareTarget, type TxnCompare, type TxnOp } from "../shard/txn.js";
import { smallBytes } from "../small-bytes.js";
import { layoutRootAndChild, pointerAt, readData, readRootAndChild, writeData } from "./capnp-words.js";
import {
  CompareRelation as WireRelation,
  CompareTarget as WireTarget,
  Request,
  Request_Which,
  Response,
  Response_Which,
  type Txn,
  TxnOp_Which,
  ChangeKind,
} from "./gen/piccolo.js";
import { type Change, ChangeType } from "../shard/history.js";

export { Request_Which as OpKind };

/** A decoded, validated request. Keys and values are views into the frame. */
export interface Operation {
  id: bigint;
  kind: Request_Which;
  keys: Uint8Array[];
  values: Uint8Array[];
  ttlMs: number;
  expireAtMs: number;
  keepTtl: boolean;
  /**
   * cas: expected version; delete: ifVersion (0 = unconditional); transferLeader, replaceReplica: the member to
   * lead / to add; forgetMember: the member to forget.
   */
  version: number;
  /** scan: the cursor; replaceReplica: the member to remove. */
  cursor: number;
  /** scan, mget...: a count; transferLeader, replaceReplica: the partition. */
  count: number;
  /** Reads: a stale answer is acceptable (any replica may serve it; docs/cluster.md, "Stale reads"). */
  stale: boolean;
  /** The caller asked for the request's timeline (docs/tracing.md). */
  trace: boolean;
  /** auth: the password and user. */
  password: string;
  user: string;
  /** txn: the transaction, its keys and values views into the frame. */
  txn: DecodedTxn | null;
  /** watch: the position to resume from ("" from now); keys[0] is the key or the prefix. */
  from: string;
  /** watch: keys[0] is a prefix (else one whole key). */
  prefix: boolean;
  /** restoreKeys: each entry's version and absolute expiry (keys and values as for mput). */
  versions: number[];
  expiries: number[];
  /** Set when the request cannot be served; the IO loop answers with it. */
  errorCode: number;
  errorMessage: string;
}

/**
 * A decoded Txn request: compares and ops as shard commands (Op.GET, Op.PUT,
 * Op.DELETE), ready for src/io/txn.ts once the puts' relative TTLs are made
 * absolute at the request's start (`successTtlMs`, `failureTtlMs`: per op,
 * 0 for none).
 */
export interface DecodedTxn {
  compares: TxnCompare[];
  success: TxnOp[];
  failure: TxnOp[];
  successTtlMs: number[];
  failureTtlMs: number[];
  /** Answer only which branch ran (Txn.verdictOnly): no op's result. */
  verdictOnly: boolean;
}

const EMPTY = new Uint8Array(0);

export function blankOperation(id: bigint, kind: Request_Which): Operation {
  return {
    id,
    kind,
    keys: [],
    values: [],
    ttlMs: 0,
    expireAtMs: 0,
    keepTtl: false,
    version: 0,
    cursor: 0,
    count: 0,
    stale: false,
    trace: false,
    password: "",
    user: "",
    txn: null,
    from: "",
    prefix: false,
    versions: [],
    expiries: [],
    errorCode: 0,
    errorMessage: "",
  };
}

function fail(op: Operation, code: number, message: string): Operation {
  op.errorCode = code;
  op.errorMessage = message;
  return op;
}

function checkKey(op: Operation, key: Uint8Array): boolean {
  if (key.length === 0) {
    fail(op, ErrorCode.INVALID_ARGUMENT, "key is empty");
    return false;
  }
  if (key.length > MAX_KEY_BYTES) {
    fail(op, ErrorCode.KEY_TOO_LARGE, `key of ${key.length} bytes exceeds the limit of ${MAX_KEY_BYTES}`);
    return false;
  }
  return true;
}

function checkValue(op: Operation, value: Uint8Array, maxValueBytes: number): boolean {
  if (value.length > maxValueBytes) {
    fail(op, ErrorCode.VALUE_TOO_LARGE, `value of ${value.length} bytes exceeds the limit of ${maxValueBytes}`);
    return false;
  }
  return true;
}

function checkTime(op: Operation, ttl: bigint, at: bigint): boolean {
  if (ttl > BigInt(MAX_TTL_MS)) {
    fail(op, ErrorCode.INVALID_ARGUMENT, `ttlMs ${ttl} exceeds the limit of ${MAX_TTL_MS}`);
    return false;
  }
  if (at > BigInt(Number.MAX_SAFE_INTEGER)) {
    fail(op, ErrorCode.INVALID_ARGUMENT, `expireAtMs ${at} is out of range`);
    return false;
  }
  op.ttlMs = Number(ttl);
  op.expireAtMs = Number(at);
  return true;
}

function data(d: capnp.Data): Uint8Array {
  return d.length === 0 ? EMPTY : d.toUint8Array();
}

/**
 * Decodes one frame. Never throws: a frame that is not a valid Request comes
 * back as an Operation with errorCode MALFORMED_FRAME (id 0 when even the id
 * could not be read).
 */
export function decodeRequest(frame: ArrayBuffer | Uint8Array, maxValueBytes: number): Operation {
  const bytes = frame instanceof Uint8Array ? frame : new Uint8Array(frame);
  return decodeSimpleRequest(bytes, maxValueBytes) ?? decodeRequestGeneric(ownBuffer(bytes), maxValueBytes);
}

/** The frame as an ArrayBuffer of its own, for capnp-es (a view carved from a shared block is copied). */
function ownBuffer(frame: Uint8Array): ArrayBuffer {
  return frame.byteOffset === 0 && frame.byteLength === frame.buffer.byteLength
    ? (frame.buffer as ArrayBuffer)
    : (frame.slice().buffer as ArrayBuffer);
}

/** decodeRequest through capnp-es alone, for every request (exported so tests can hold the hand path to it). */
export function decodeRequestGeneric(frame: ArrayBuffer, maxValueBytes: number): Operation {
  let id = 0n;
  try {
    const req = new capnp.Message(frame, false).getRoot(Request);
    id = req.id;
    const kind = req.which();
    const op = blankOperation(id, kind);
    op.stale = req.stale;
    op.trace = req.trace;
    switch (kind) {
      case Request_Which.PING:
      case Request_Which.STATS:
      case Request_Which.CLUSTER_INFO:
      case Request_Which.WHOAMI:
        return op;
      case Request_Which.TRANSFER_LEADER: {
        const t = req.transferLeader;
        op.count = t.partition;
        op.version = t.member;
        return op;
      }
      case Request_Which.REPLACE_REPLICA: {
        const t = req.replaceReplica;
        op.count = t.partition;
        op.cursor = t.remove;
        op.version = t.add;
        return op;
      }
      case Request_Which.FORGET_MEMBER:
        op.version = req.forgetMember.member;
        return op;
      case Request_Which.SLOWLOG:
        op.count = req.slowlog.count;
        op.prefix = req.slowlog.reset; // the Operation's one spare flag: "reset after reading"
        return op;
      case Request_Which.AUTH: {
        const a = req.auth;
        op.password = a.password;
        op.user = a.user;
        return op;
      }
      case Request_Which.GET:
      case Request_Which.EXISTS:
      case Request_Which.PERSIST:
      case Request_Which.TTL: {
        const arg =
          kind === Request_Which.GET
            ? req.get
            : kind === Request_Which.EXISTS
              ? req.exists
              : kind === Request_Which.PERSIST
                ? req.persist
                : req.ttl;
        const key = data(arg.key);
        if (checkKey(op, key)) op.keys.push(key);
        return op;
      }
      case Request_Which.PUT:
      case Request_Which.INSERT:
      case Request_Which.UPDATE: {
        const w = kind === Request_Which.PUT ? req.put : kind === Request_Which.INSERT ? req.insert : req.update;
        const key = data(w.key);
        const value = data(w.value);
        if (!checkKey(op, key) || !checkValue(op, value, maxValueBytes) || !checkTime(op, w.ttlMs, w.expireAtMs))
          return op;
        op.keys.push(key);
        op.values.push(value);
        op.keepTtl = w.keepTtl;
        return op;
      }
      case Request_Which.CAS: {
        const c = req.cas;
        const key = data(c.key);
        const value = data(c.value);
        if (!checkKey(op, key) || !checkValue(op, value, maxValueBytes) || !checkTime(op, c.ttlMs, c.expireAtMs))
          return op;
        op.keys.push(key);
        op.values.push(value);
        op.version = Number(c.expectedVersion);
        return op;
      }
      case Request_Which.DELETE: {
        const d = req.delete;
        const key = data(d.key);
        if (!checkKey(op, key)) return op;
        op.keys.push(key);
        op.version = Number(d.ifVersion);
        return op;
      }
      case Request_Which.EXPIRE: {
        const e = req.expire;
        const key = data(e.key);
        if (!checkKey(op, key) || !checkTime(op, e.ttlMs, e.expireAtMs)) return op;
        op.keys.push(key);
        return op;
      }
      case Request_Which.MGET:
      case Request_Which.MDEL: {
        const list = (kind === Request_Which.MGET ? req.mget : req.mdel).keys;
        if (list.length === 0) return fail(op, ErrorCode.INVALID_ARGUMENT, "key list is empty");
        if (list.length > MAX_BATCH_KEYS)
          return fail(op, ErrorCode.TOO_MANY_KEYS, `${list.length} keys exceed the limit of ${MAX_BATCH_KEYS}`);
        for (let i = 0; i < list.length; i++) {
          const key = data(list[i]!.key);
          if (!checkKey(op, key)) return op;
          op.keys.push(key);
        }
        return op;
      }
      case Request_Which.MPUT: {
        const m = req.mput;
        const entries = m.entries;
        if (entries.length === 0) return fail(op, ErrorCode.INVALID_ARGUMENT, "entry list is empty");
        if (entries.length > MAX_BATCH_KEYS)
          return fail(op, ErrorCode.TOO_MANY_KEYS, `${entries.length} entries exceed the limit of ${MAX_BATCH_KEYS}`);
        if (!checkTime(op, m.ttlMs, 0n)) return op;
        for (let i = 0; i < entries.length; i++) {
          const e = entries[i]!;
          const key = data(e.key);
          const value = data(e.value);
          if (!checkKey(op, key) || !checkValue(op, value, maxValueBytes)) return op;
          op.keys.push(key);
          op.values.push(value);
        }
        return op;
      }
      case Request_Which.SCAN: {
        const s = req.scan;
        const prefix = data(s.prefix);
        if (prefix.length > MAX_KEY_BYTES) return fail(op, ErrorCode.KEY_TOO_LARGE, "prefix exceeds the key limit");
        op.keys.push(prefix);
        op.cursor = Number(s.cursor);
        op.count = s.count;
        return op;
      }
      case Request_Which.TXN:
        return decodeTxn(op, req.txn, maxValueBytes);
      case Request_Which.WATCH: {
        const w = req.watch;
        const key = data(w.key);
        op.prefix = w.prefix;
        // A prefix may be empty (every key); a whole key follows the key rules.
        if (op.prefix ? key.length > MAX_KEY_BYTES : !checkKey(op, key)) {
          if (op.errorCode === 0) fail(op, ErrorCode.KEY_TOO_LARGE, "prefix exceeds the key limit");
          return op;
        }
        op.keys.push(key);
        op.from = w.from;
        if (op.from.length > 64 * 1024) return fail(op, ErrorCode.INVALID_ARGUMENT, "from: not a position");
        return op;
      }
      case Request_Which.CANCEL_WATCH:
        op.version = Number(req.cancelWatch.id);
        return op;
      case Request_Which.BACKUP:
        return op;
      case Request_Which.RESTORE_KEYS: {
        const entries = req.restoreKeys.entries;
        if (entries.length === 0) return fail(op, ErrorCode.INVALID_ARGUMENT, "entry list is empty");
        if (entries.length > MAX_BATCH_KEYS)
          return fail(op, ErrorCode.TOO_MANY_KEYS, `${entries.length} entries exceed the limit of ${MAX_BATCH_KEYS}`);
        for (let i = 0; i < entries.length; i++) {
          const e = entries[i]!;
          const key = data(e.key);
          const value = data(e.value);
          if (!checkKey(op, key) || !checkValue(op, value, maxValueBytes) || !checkTime(op, 0n, e.expireAtMs))
            return op;
          const version = Number(e.version);
          if (!Number.isSafeInteger(version) || version < 1)
            return fail(op, ErrorCode.INVALID_ARGUMENT, `entry ${i}: a version must be at least 1`);
          op.keys.push(key);
          op.values.push(value);
          op.versions.push(version);
          op.expiries.push(Number(e.expireAtMs));
        }
        return op;
      }
      default:
        return fail(op, ErrorCode.UNKNOWN_OPERATION, `unknown operation ${kind} (a newer client?)`);
    }
  } catch (err) {
    return fail(
      blankOperation(id, Request_Which.PING),
      ErrorCode.MALFORMED_FRAME,
      `not a valid Request: ${(err as Error).message}`,
    );
  }
}

export const TARGETS: Record<number, number> = {
  [WireTarget.VERSION]: CompareTarget.VERSION,
  [WireTarget.VALUE]: CompareTarget.VALUE,
};
export const RELATIONS: Record<number, number> = {
  [WireRelation.EQUAL]: CompareRelation.EQUAL,
  [WireRelation.NOT_EQUAL]: CompareRelation.NOT_EQUAL,
  [WireRelation.LESS]: CompareRelation.LESS,
  [WireRelation.GREATER]: CompareRelation.GREATER,
};

/**
 * A Txn request, validated as the single-key requests are (keys, values,
 * TTLs), and against the transaction's own limits: TXN_MAX_OPS compares and
 * ops together, TXN_MAX_BYTES of keys and values (TXN_TOO_LARGE). The count
 * is checked first, from the lists' lengths alone.
 */
function decodeTxn(op: Operation, t: Txn, maxValueBytes: number): Operation {
  const compares = t.compares;
  const branches = [t.success, t.failure] as const;
  const count = compares.length + branches[0].length + branches[1].length;
  if (count > TXN_MAX_OPS)
    return fail(op, ErrorCode.TXN_TOO_LARGE, `${count} compares and ops; the limit is ${TXN_MAX_OPS}`);
  let bytes = 0;
  const tooLarge = (): Operation =>
    fail(op, ErrorCode.TXN_TOO_LARGE, `over ${TXN_MAX_BYTES} bytes of keys and values; the limit is ${TXN_MAX_BYTES}`);
  const out: DecodedTxn = {
    compares: [],
    success: [],
    failure: [],
    successTtlMs: [],
    failureTtlMs: [],
    verdictOnly: t.verdictOnly,
  };
  for (let i = 0; i < compares.length; i++) {
    const c = compares[i]!;
    const key = data(c.key);
    if (!checkKey(op, key)) return prefixError(op, `compare ${i}`);
    const target = TARGETS[c.target];
    const relation = RELATIONS[c.relation];
    if (target === undefined) return fail(op, ErrorCode.INVALID_ARGUMENT, `compare ${i}: unknown target ${c.target}`);
    if (relation === undefined)
      return fail(op, ErrorCode.INVALID_ARGUMENT, `compare ${i}: unknown relation ${c.relation}`);
    const value = target === CompareTarget.VALUE ? data(c.value) : null;
    if (value !== null && !checkValue(op, value, maxValueBytes)) return prefixError(op, `compare ${i}`);
    bytes += key.length + (value?.length ?? 0);
    if (bytes > TXN_MAX_BYTES) return tooLarge();
    out.compares.push({ key, target, relation, number: Number(c.version), value });
  }
  for (const [b, list] of branches.entries()) {
    const name = b === 0 ? "success" : "failure";
    const ops = b === 0 ? out.success : out.failure;
    const ttls = b === 0 ? out.successTtlMs : out.failureTtlMs;
    for (let i = 0; i < list.length; i++) {
      const o = list[i]!;
      const which = o.which();
      const at = `${name} op ${i}`;
      let key: Uint8Array;
      let value: Uint8Array | null = null;
      let cmd: Op;
      let flags = 0;
      let ttlMs = 0;
      let expireAtMs = 0;
      if (which === TxnOp_Which.PUT) {
        const w = o.put;
        key = data(w.key);
        value = data(w.value);
        if (!checkKey(op, key) || !checkValue(op, value, maxValueBytes) || !checkTime(op, w.ttlMs, w.expireAtMs))
          return prefixError(op, at);
        cmd = Op.PUT;
        ttlMs = op.ttlMs;
        expireAtMs = op.expireAtMs;
        op.ttlMs = 0;
        op.expireAtMs = 0;
        if (w.keepTtl) flags = FLAG_KEEP_TTL;
      } else if (which === TxnOp_Which.DELETE || which === TxnOp_Which.GET) {
        key = data(which === TxnOp_Which.GET ? o.get.key : o.delete.key);
        if (!checkKey(op, key)) return prefixError(op, at);
        cmd = which === TxnOp_Which.GET ? Op.GET : Op.DELETE;
      } else return fail(op, ErrorCode.UNKNOWN_OPERATION, `${at}: unknown op ${which} (a newer client?)`);
      bytes += key.length + (value?.length ?? 0);
      if (bytes > TXN_MAX_BYTES) return tooLarge();
      ops.push({ op: cmd, flags, expireAtMs, arg0: 0, arg1: 0, key, value });
      ttls.push(ttlMs);
    }
  }
  op.txn = out;
  return op;
}

/** Names the part of a transaction a validation error is about. */
function prefixError(op: Operation, at: string): Operation {
  op.errorMessage = `${at}: ${op.errorMessage}`;
  return op;
}

/**
 * The hot requests (get, put, insert, update) read by hand from a
 * single-segment frame (src/protocol/capnp-words.ts), without capnp-es's
 * objects: these are most of the traffic, and capnp-es's reading was the
 * largest single cost of a member's IO thread under load (decision 0192).
 * Null for any other request or shape, which then takes the capnp-es path,
 * the judge of everything unusual: other kinds, several segments, far or
 * null pointers, structs from an older or newer schema version that are not
 * the size this one writes.
 *
 * Layouts from the generated code (src/protocol/gen/piccolo.ts): Request has
 * 2 data words (id at byte 0, the union's discriminant at byte 8, `stale` at
 * bit 80) and 1 pointer (the union's struct); Key has its Data at pointer 0;
 * Write has 3 data words (ttlMs at byte 0, expireAtMs at 8, keepTtl at bit
 * 128) and pointers key, value.
 */
function decodeSimpleRequest(frame: Uint8Array, maxValueBytes: number): Operation | null {
  const u = readRootAndChild(frame, 2, 8);
  if (u === null) return null;
  const { s, root: req, which: kind, child: arg } = u;
  const isWrite = kind === Request_Which.PUT || kind === Request_Which.INSERT || kind === Request_Which.UPDATE;
  if (kind !== Request_Which.GET && !isWrite) return null;
  if (arg === null || arg.dataWords !== (isWrite ? 3 : 0) || arg.pointers !== (isWrite ? 2 : 1)) return null;
  const key = readData(s, pointerAt(arg, 0));
  const value = isWrite ? readData(s, pointerAt(arg, 1)) : EMPTY;
  if (key === null || value === null) return null;
  const v = s.view;
  const op = blankOperation(v.getBigUint64(req.data, true), kind);
  op.stale = (v.getUint8(req.data + 10) & 1) !== 0;
  op.trace = (v.getUint8(req.data + 10) & 2) !== 0;
  if (!checkKey(op, key)) return op;
  if (isWrite) {
    if (!checkValue(op, value, maxValueBytes)) return op;
    if (!checkTime(op, v.getBigUint64(arg.data, true), v.getBigUint64(arg.data + 8, true))) return op;
    op.keepTtl = (v.getUint8(arg.data + 16) & 1) !== 0;
    op.values.push(value);
  }
  op.keys.push(key);
  return op;
}

/** One key's outcome, as the IO loop gathered it from a shard. */
export type PartResult = ResultFields;

export interface ShardStatsRow {
  shard: number;
  keys: number;
  memoryBytes: number;
  reads: number;
  writes: number;
  expired: number;
  /** The shard's journal, when the node is durable (absent: in memory only). */
  persistence?: {
    logBytes: number;
    snapshotBytes: number;
    lastSaveMs: number;
    fsyncs: number;
    fsyncTotalMs: number;
    fsyncMaxMs: number;
    refusingWrites: boolean;
  };
}

function frameOf(message: capnp.Message): Uint8Array {
  return new Uint8Array(message.toArrayBuffer());
}

export function encodeError(id: bigint, code: number, message: string, version = 0): Uint8Array {
  const m = new capnp.Message();
  const r = m.initRoot(Response);
  r.id = id;
  const e = r._initError();
  e.code = code;
  e.message = message;
  e.version = BigInt(version);
  return frameOf(m);
}

/** A traced request's timeline (docs/tracing.md): a frame with the request's id, sent right before its answer. */
export function encodeTrace(id: bigint, t: TraceOut): Uint8Array {
  const m = new capnp.Message();
  const r = m.initRoot(Response);
  r.id = id;
  const tr = r._initTrace();
  tr.dropped = t.dropped;
  tr.node = t.node;
  const list = tr._initSpans(t.spans.length);
  t.spans.forEach((s, i) => {
    const x = list.get(i);
    x.stage = s.stage;
    x.where = s.where;
    x.startUs = BigInt(s.startUs);
    x.durationUs = BigInt(s.durationUs);
    x.detail = s.detail;
  });
  return frameOf(m);
}

/** The slow log (src/io/slowlog.ts): its newest entries and its figures. */
export function encodeSlowLog(
  id: bigint,
  entries: readonly SlowEntry[],
  length: number,
  slowerThanUs: number,
  maxLen: number,
): Uint8Array {
  const m = new capnp.Message();
  const r = m.initRoot(Response);
  r.id = id;
  const l = r._initSlowlog();
  l.length = length;
  l.slowerThanUs = BigInt(slowerThanUs);
  l.maxLen = maxLen;
  const list = l._initEntries(entries.length);
  entries.forEach((e, i) => {
    const x = list.get(i);
    x.id = BigInt(e.id);
    x.timeMs = BigInt(e.timeMs);
    x.durationUs = BigInt(e.durationUs);
    const args = x._initArgs(e.args.length);
    for (const [j, a] of e.args.entries()) args.set(j, a);
    x.client = e.client;
    x.clientName = e.clientName;
    x.port = e.port;
    x.traced = e.spans !== null;
    const spans = x._initSpans(e.spans?.length ?? 0);
    (e.spans ?? []).forEach((s, j) => {
      const y = spans.get(j);
      y.stage = s.stage;
      y.where = s.where;
      y.startUs = BigInt(s.startUs);
      y.durationUs = BigInt(s.durationUs);
      y.detail = s.detail;
    });
  });
  return frameOf(m);
}

/** The message sent with an error code: the outcome table's sentence (src/outcomes.ts). */
export function messageFor(code: number): string {
  return outcomeOf(code).text;
}

function setValue(
  v: { found: boolean; version: bigint; expireAtMs: bigint; _initValue(n: number): capnp.Data },
  p: PartResult,
): void {
  if (p.flag === 0) return;
  v.found = true;
  v.version = BigInt(p.version);
  v.expireAtMs = BigInt(p.expireAtMs);
  if (p.value !== null && p.value.length > 0) v._initValue(p.value.length).copyBuffer(p.value);
}

/** A Response (3 data words: id at byte 0, discriminant at 8) holding a struct, laid out by hand. */
function simpleResponse(id: bigint, which: number, dataWords: number, pointers: number, tailBytes: number) {
  const r = layoutRootAndChild(3, dataWords, pointers, tailBytes, smallBytes);
  r.seg.view.setBigUint64(r.root, id, true);
  r.seg.view.setUint16(r.root + 8, which, true);
  return r;
}

/** Written (2 data words: version at byte 0, created at bit 64; no pointers). */
function encodeWritten(id: bigint, version: number, created: boolean): Uint8Array {
  const { out, seg, child } = simpleResponse(id, Response_Which.WRITTEN, 2, 0, 0);
  seg.view.setBigUint64(child, BigInt(version), true);
  seg.view.setUint8(child + 8, created ? 1 : 0);
  return out;
}

/** Value (3 data words: found at bit 0, version at byte 8, expireAtMs at 16; the value's Data at pointer 0). */
function encodeValue(id: bigint, p: PartResult): Uint8Array {
  const found = p.flag !== 0;
  const value = found && p.value !== null ? p.value : EMPTY;
  const { out, seg, child, childPtrs, tail } = simpleResponse(id, Response_Which.VALUE, 3, 1, value.length);
  if (found) {
    seg.view.setUint8(child, 1);
    seg.view.setBigUint64(child + 8, BigInt(p.version), true);
    seg.view.setBigUint64(child + 16, BigInt(p.expireAtMs), true);
  }
  writeData(seg, out, childPtrs, tail, value);
  return out;
}

/** Encodes the Response for a single-key operation from its one result. */
export function encodeSingle(id: bigint, kind: Request_Which, p: PartResult): Uint8Array {
  if (p.status !== ErrorCode.OK) return encodeError(id, p.status, messageFor(p.status), p.version);
  // The hot answers, laid out by hand (decision 0192); the rest through capnp-es.
  if (kind === Request_Which.GET) return encodeValue(id, p);
  // The shard's flag for a put is 1 when it replaced a key, 0 when it created one.
  if (kind === Request_Which.PUT || kind === Request_Which.INSERT || kind === Request_Which.UPDATE)
    return encodeWritten(id, p.version, kind === Request_Which.INSERT || (kind === Request_Which.PUT && p.flag === 0));
  const m = new capnp.Message();
  const r = m.initRoot(Response);
  r.id = id;
  switch (kind) {
    case Request_Which.CAS:
      r._initWritten().version = BigInt(p.version);
      break;
    case Request_Which.DELETE:
      r.deleted = p.flag === 1;
      break;
    case Request_Which.EXISTS:
      r.exists = p.flag === 1;
      break;
    case Request_Which.EXPIRE:
    case Request_Which.PERSIST:
      r.expire = p.flag === 1;
      break;
    case Request_Which.TTL:
      r._initTtl().ttlMs = BigInt(Math.max(p.num, Math.min(p.num, 0)));
      break;
    default:
      return encodeError(id, ErrorCode.INTERNAL, `no single-key encoding for operation ${kind}`);
  }
  return frameOf(m);
}

/**
 * One frame of a backup stream (src/io/backup.ts), laid out by hand:
 * BackupChunk has 1 data word (last at bit 0) and 1 pointer (data). Through
 * capnp-es a 1 MiB frame cost the IO thread about 5 ms; this is one copy.
 */
export function encodeBackupChunk(id: bigint, data: Uint8Array, last: boolean): Uint8Array {
  const { out, seg, child, childPtrs, tail } = simpleResponse(id, Response_Which.BACKUP, 1, 1, data.length);
  if (last) seg.view.setUint8(child, 1);
  writeData(seg, out, childPtrs, tail, data);
  return out;
}

export function encodeOk(id: bigint): Uint8Array {
  const m = new capnp.Message();
  const r = m.initRoot(Response);
  r.id = id;
  r.ok = true;
  return frameOf(m);
}

export function encodePong(id: bigint): Uint8Array {
  const m = new capnp.Message();
  const r = m.initRoot(Response);
  r.id = id;
  r.pong = true;
  return frameOf(m);
}

/** whoami: the connection's user and what it may do (the node still checks every request). */
export function encodeWhoAmI(
  id: bigint,
  who: { user: string; read: boolean; write: boolean; admin: boolean; allKeys: boolean },
): Uint8Array {
  const m = new capnp.Message();
  const r = m.initRoot(Response);
  r.id = id;
  const w = r._initWhoami();
  w.user = who.user;
  w.read = who.read;
  w.write = who.write;
  w.admin = who.admin;
  w.allKeys = who.allKeys;
  return frameOf(m);
}

/** mget, mput, mdel: one Response from every key's result, in request order. */
export function encodeMulti(id: bigint, kind: Request_Which, parts: PartResult[]): Uint8Array {
  for (const p of parts) if (p.status !== ErrorCode.OK) return encodeError(id, p.status, messageFor(p.status));
  const m = new capnp.Message();
  const r = m.initRoot(Response);
  r.id = id;
  if (kind === Request_Which.MGET) {
    const list = r._initValues(parts.length);
    for (let i = 0; i < parts.length; i++) setValue(list[i]!, parts[i]!);
  } else if (kind === Request_Which.MPUT || kind === Request_Which.RESTORE_KEYS) {
    const list = r._initVersions(parts.length);
    for (let i = 0; i < parts.length; i++) list.set(i, BigInt(parts[i]!.version));
  } else {
    let removed = 0;
    for (const p of parts) removed += p.flag;
    r.count = BigInt(removed);
  }
  return frameOf(m);
}

export function encodeScan(id: bigint, cursor: number, keys: readonly Uint8Array[]): Uint8Array {
  const m = new capnp.Message();
  const r = m.initRoot(Response);
  r.id = id;
  const s = r._initScan();
  s.cursor = BigInt(cursor);
  const list = s._initKeys(keys.length);
  for (let i = 0; i < keys.length; i++) list[i]!._initKey(keys[i]!.length).copyBuffer(keys[i]!);
  return frameOf(m);
}

export function encodeStats(id: bigint, rows: ShardStatsRow[], uptimeMs: number, connections: number): Uint8Array {
  const m = new capnp.Message();
  const r = m.initRoot(Response);
  r.id = id;
  const s = r._initStats();
  s.uptimeMs = BigInt(Math.floor(uptimeMs));
  s.connections = connections;
  const list = s._initShards(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    const t = list[i]!;
    t.shard = row.shard;
    t.keys = BigInt(row.keys);
    t.memoryBytes = BigInt(row.memoryBytes);
    t.reads = BigInt(row.reads);
    t.writes = BigInt(row.writes);
    t.expired = BigInt(row.expired);
    const p = row.persistence;
    if (p !== undefined) {
      t.durable = true;
      t.logBytes = BigInt(p.logBytes);
      t.snapshotBytes = BigInt(p.snapshotBytes);
      t.lastSaveMs = BigInt(Math.floor(p.lastSaveMs));
      t.fsyncs = BigInt(p.fsyncs);
      t.fsyncTotalUs = BigInt(Math.round(p.fsyncTotalMs * 1000));
      t.fsyncMaxUs = BigInt(Math.round(p.fsyncMaxMs * 1000));
      t.refusingWrites = p.refusingWrites;
    }
  }
  return frameOf(m);
}

/**
 * A transaction's answer: whether the success branch ran, and each op of the
 * branch that ran, in order, by its shard command (`ops[i]`: Op.GET, Op.PUT,
 * Op.DELETE) and its result. A put's flag is 1 when it replaced a key.
 */
export function encodeTxn(id: bigint, succeeded: boolean, ops: readonly number[], results: PartResult[]): Uint8Array {
  const m = new capnp.Message();
  const r = m.initRoot(Response);
  r.id = id;
  const t = r._initTxn();
  t.succeeded = succeeded;
  const list = t._initResults(ops.length);
  for (let i = 0; i < ops.length; i++) {
    const p = results[i]!;
    const item = list[i]!;
    if (ops[i] === Op.PUT) {
      const w = item._initPut();
      w.version = BigInt(p.version);
      w.created = p.flag === 0;
    } else if (ops[i] === Op.DELETE) item.delete = p.flag === 1;
    else setValue(item._initGet(), p);
  }
  return frameOf(m);
}

const CHANGE_KINDS: Record<number, ChangeKind> = {
  [ChangeType.PUT]: ChangeKind.PUT,
  [ChangeType.DELETE]: ChangeKind.DELETE,
  [ChangeType.EXPIRE]: ChangeKind.EXPIRE,
  [ChangeType.EXPIRED]: ChangeKind.EXPIRED,
  [ChangeType.FLUSH]: ChangeKind.FLUSH,
};

/**
 * One frame of a watch's stream (docs/watch.md): the changes, the position
 * after them; `created` for the first; `endCode` (with `endMessage`) for a
 * watch the node ends.
 */
export function encodeWatchEvents(
  id: bigint,
  position: string,
  changes: readonly Change[],
  created = false,
  endCode = 0,
  endMessage = "",
  shard = 0,
): Uint8Array {
  const m = new capnp.Message();
  const r = m.initRoot(Response);
  r.id = id;
  const w = r._initWatch();
  w.position = position;
  w.created = created;
  w.endCode = endCode;
  w.shard = shard;
  if (endMessage !== "") w.endMessage = endMessage;
  const list = w._initEvents(changes.length);
  for (let i = 0; i < changes.length; i++) {
    const c = changes[i]!;
    const e = list[i]!;
    e.kind = CHANGE_KINDS[c.type]!;
    if (c.key.length > 0) e._initKey(c.key.length).copyBuffer(c.key);
    e.hasValue = c.value !== null;
    if (c.value !== null && c.value.length > 0) e._initValue(c.value.length).copyBuffer(c.value);
    e.valueBytes = c.valueBytes;
    e.version = BigInt(c.version);
    e.expireAtMs = BigInt(c.expiresAtMs);
    e.seq = BigInt(c.seq);
  }
  return frameOf(m);
}
