/**
 * The shard command: the one binary form of every operation a shard applies.
 *
 * The IO loop turns each protocol request (Cap'n Proto or RESP) into one or
 * more commands, one per key, and writes them into the owning shard's ring.
 * The same bytes are what a Raft log will carry once partitions replicate
 * (issue #7): a command holds everything its outcome depends on, including
 * the clock. `nowMs` is fixed by whoever accepts the request, and every expiry
 * decision of the command uses it, never the shard's own clock, so replaying
 * a log of commands yields the same map on every replica.
 *
 * Command layout (little-endian, 48-byte header, then key, then value):
 *
 *   0  u8   op           Op below
 *   1  u8   flags        FLAG_KEEP_TTL, FLAG_RETURN_OLD, FLAG_SET_EXPIRY,
 *                        FLAG_STALE_READ
 *   2  u8   traced       1: stamp the result (docs/tracing.md), else 0
 *   3  u8   reserved     0
 *   4  u32  tag          opaque to the shard, echoed in the result (the IO
 *                        loop's index of the waiting request)
 *   8  u32  keyBytes
 *   12 u32  valueBytes
 *   16 f64  nowMs        the acceptor's clock (Unix ms)
 *   24 f64  expireAtMs   absolute expiry to set; 0 = none
 *   32 f64  arg0         expected version (cas, delete), scan cursor
 *   40 f64  arg1         scan count
 *   48 ...  key bytes, then value bytes
 *
 * Result layout (40-byte header, then value):
 *
 *   0  u32  tag          the command's tag
 *   4  u8   status       an ErrorCode (0 = OK)
 *   5  u8   flag         found / existed / changed, per op
 *   6  u8   hasValue     1 when a value follows (possibly empty), 0 for none:
 *                        "no old value" and "an empty old value" differ (GETSET)
 *   7  u8   traced       1: a trace trailer follows the value (below); 2: a
 *                        cluster's trace follows it: u32 length, then that
 *                        many bytes of JSON (src/cluster/trace-stamps.ts)
 *   8  f64  version      the key's version after the op (or current, on a
 *                        failed condition); 0 = absent
 *   16 f64  expireAtMs   the key's expiry; 0 = none
 *   24 f64  num          ttl in ms (TTL op), next cursor (SCAN)
 *   32 u32  valueBytes
 *   36 u32  reserved
 *   40 ...  value bytes (GET: the value; SCAN: packed keys; STATS: packed numbers)
 *   then, when traced, TRACE_TRAILER_BYTES: f64 picked (the worker took the
 *   command from its ring), f64 executed, f64 commitStart and f64 commitEnd
 *   (the journal write and fsync that covered it; 0 when none), f64 fsync
 *   policy (0 none, 1 always, 2 everysec, 3 no), each time on traceClock()
 *   (src/io/trace.ts)
 *
 * Doubles carry versions and times: exact for integers below 2^53, which a
 * counter bumped a billion times a second would reach in 104 days... of
 * uninterrupted writes on one shard; at a realistic million per second, 285
 * years.
 */

import { ErrorCode } from "../errors.js";
// A type only: a transaction run in place is carried by a command, and defined where transactions are.
import type { TxnBranches } from "./txn.js";

export const Op = {
  GET: 1,
  PUT: 2,
  INSERT: 3,
  UPDATE: 4,
  CAS: 5,
  DELETE: 6,
  EXISTS: 7,
  EXPIRE: 8,
  PERSIST: 9,
  TTL: 10,
  SCAN: 11,
  STATS: 12,
  FLUSH: 13,
  /** Adds the integer in `value` (decimal text) to the key's integer value; result value: the new text. */
  INCRBY: 14,
  /** Adds the float in `value` (decimal text); result value: the new text. */
  INCRBYFLOAT: 15,
  /** Appends `value`; num: the new length. */
  APPEND: 16,
  /** Overwrites from byte arg0 (zero-padding), at most arg1 bytes long; num: the new length. */
  SETRANGE: 17,
  /** Reads the value; with FLAG_SET_EXPIRY also sets the expiry to expireAtMs (0: persist). */
  GETEX: 18,
  /**
   * Removes keys expired at nowMs, examining at most arg0 (the active expiry
   * sweep). A replicated partition's leader proposes it through the log, so
   * expired keys are reclaimed on every replica; num: how many were removed.
   */
  SWEEP: 19,
  /**
   * A durable shard snapshots its map (src/journal/). arg0 0: BGSAVE, the
   * answer comes once it started; 1: SAVE, once the snapshot is durable;
   * 2: DEBUG RELOAD, SAVE and then the map read back from the files.
   * num: when the last snapshot finished (ms); flag 1: one is running.
   */
  SNAPSHOT: 20,
  /** A durable shard's journal figures: value = f64s named by PERSISTENCE_FIELDS. */
  PERSISTENCE: 21,
  /**
   * A transaction's part on this shard (src/shard/txn.ts): value = the part;
   * arg0 = its barrier slot when it has several participants (-1: alone).
   * flag 1: the success branch ran; value: the branch's results.
   */
  TXN: 22,
  /**
   * The shard's changes after position arg0 whose key starts with `key`
   * (WATCH_EXACT: equals it), at most arg1 bytes (src/shard/history.ts).
   * value: the change records; num: the position to read on from; version:
   * the oldest position kept. COMPACTED when arg0 is older than that. With
   * nothing new the read is parked until a change or WATCH_PARK_MS
   * (WATCH_NO_PARK: answered empty at once).
   */
  WATCH: 23,
  /**
   * A node backup's steps on a shard (src/journal/backup.ts; arg0: BackupStep):
   * start walking into the part file named by value, report whether the walk
   * ended (flag 1), cut (num: the part's bytes), abort. A failed step answers
   * INTERNAL or STORAGE_FAILED with the reason as its value.
   */
  BACKUP: 24,
  /**
   * A replicated partition's whole map, read at one linearizable point (the
   * leader after ReadIndex): value = the partition's snapshot bytes
   * (src/cluster/partition-machine.ts), num: the log's clock.
   */
  DUMP: 25,
  /**
   * Sets a key whole, as a backup holds it (`piccolo restore --server`):
   * value, version = arg0 (at least 1), expiry = expireAtMs. The version
   * counter is raised to it, so later writes get higher versions.
   */
  RESTORE: 26,
} as const;

/** The figures Op.PERSISTENCE answers, in order (src/journal/execute.ts). */
export const PERSISTENCE_FIELDS = [
  "logBytes",
  "snapshotBytes",
  "lastSaveMs",
  "saving",
  "changesSinceSave",
  "lastSaveOk",
  "failed",
  "fsyncs",
  "fsyncTotalMs",
  "fsyncMaxMs",
] as const;
export type Op = (typeof Op)[keyof typeof Op];

/**
 * Whether `status` is a data outcome of `op`: an answer about the key that
 * the command's own semantics give a shape (an insert that found the key, a
 * compare-and-swap at another version, an increment of a non-number). The
 * executor (execute.ts) answers only these and OK. Any other status comes
 * from around the shard (the cluster: a deadline, no leader, shutting down)
 * and is a failure: every port answers it as an error (src/outcomes.ts),
 * never in the command's success or "absent" shape.
 */
export function isDataOutcome(op: number, status: number): boolean {
  if (status === ErrorCode.OK) return true;
  switch (op) {
    case Op.INSERT:
      return status === ErrorCode.ALREADY_EXISTS;
    case Op.UPDATE:
      return status === ErrorCode.NOT_FOUND;
    case Op.CAS:
    case Op.DELETE:
      return status === ErrorCode.VERSION_MISMATCH;
    case Op.INCRBY:
    case Op.INCRBYFLOAT:
      return status === ErrorCode.NOT_AN_INTEGER || status === ErrorCode.NOT_A_FLOAT || status === ErrorCode.OVERFLOW;
    case Op.APPEND:
    case Op.SETRANGE:
      return status === ErrorCode.VALUE_TOO_LARGE;
    case Op.WATCH:
      return status === ErrorCode.COMPACTED;
    default:
      return false;
  }
}

/** Whether an op changes the map (and so must go through a log once replicated). */
export function isWrite(op: number): boolean {
  return (
    op !== Op.GET &&
    op !== Op.EXISTS &&
    op !== Op.TTL &&
    op !== Op.SCAN &&
    op !== Op.STATS &&
    op !== Op.SNAPSHOT &&
    op !== Op.PERSISTENCE &&
    op !== Op.WATCH &&
    op !== Op.BACKUP &&
    op !== Op.DUMP
  );
}

/** txn: the success (failure) branch writes nothing on any participant (src/shard/txn.ts). */
export const TXN_SUCCESS_READS_ONLY = 1;
export const TXN_FAILURE_READS_ONLY = 2;
/**
 * txn: the caller needs only the verdict, not each op's result (MSET,
 * MSETNX): the branch runs as ever, its results are not packed, and the
 * part answers with an empty value.
 */
export const TXN_NO_RESULTS = 4;

/**
 * Whether a command, with its flags, may change the map: a transaction
 * whose branches both only read is a read (served by ReadIndex in a
 * cluster, not through the log).
 */
export function isWriteCommand(op: number, flags: number): boolean {
  if (op === Op.TXN)
    return (
      (flags & (TXN_SUCCESS_READS_ONLY | TXN_FAILURE_READS_ONLY)) !== (TXN_SUCCESS_READS_ONLY | TXN_FAILURE_READS_ONLY)
    );
  return isWrite(op);
}

/** put/update: keep the key's current TTL instead of setting expireAtMs. */
export const FLAG_KEEP_TTL = 1;
/** put/insert/update/delete: the result's value is the key's value before the command (GETSET, GETDEL, SET GET). */
export const FLAG_RETURN_OLD = 2;
/** getex: set the expiry too. */
export const FLAG_SET_EXPIRY = 4;
/**
 * Reads (get, exists, ttl, scan): the caller accepts a stale answer. In
 * cluster mode a member holding a replica of the partition serves it from
 * its own map as it is, without asking the leader or waiting for ReadIndex
 * (docs/cluster.md, "Stale reads"). The shard executor ignores it: it says
 * where a read may be served, not what it does. Ignored on writes.
 */
export const FLAG_STALE_READ = 8;

/** watch: the key is the whole key watched, not a prefix. */
export const WATCH_EXACT = 1;
/** watch: answer at once even when there is nothing new. */
export const WATCH_NO_PARK = 2;

/** expire: conditions in arg1, as Redis 7's EXPIRE options. */
export const EXPIRE_NX = 1;
export const EXPIRE_XX = 2;
export const EXPIRE_GT = 4;
export const EXPIRE_LT = 8;

export const COMMAND_HEADER_BYTES = 48;
export const RESULT_HEADER_BYTES = 40;
/** A traced result's stamps, after its value (see the layout above). */
export const TRACE_TRAILER_BYTES = 40;
/** The stamps' offsets in the trailer. */
export const TRAILER_COMMIT_START = 16;
export const TRAILER_COMMIT_END = 24;
/** The fsync policy as the trailer codes it. */
export const FSYNC_CODE = { always: 1, everysec: 2, no: 3 } as const;

// A scratch pair to move doubles in and out of byte arrays without a
// DataView per message (a DataView is an allocation; this is not).
const f64 = new Float64Array(1);
const f64bytes = new Uint8Array(f64.buffer);

export function readF64(b: Uint8Array, at: number): number {
  for (let i = 0; i < 8; i++) f64bytes[i] = b[at + i]!;
  return f64[0]!;
}

export function writeF64(b: Uint8Array, at: number, v: number): void {
  f64[0] = v;
  for (let i = 0; i < 8; i++) b[at + i] = f64bytes[i]!;
}

export function readU32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

export function writeU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
  b[at + 3] = (v >>> 24) & 0xff;
}

/** The fields of one command, for building it. */
export interface CommandFields {
  op: Op;
  flags: number;
  tag: number;
  nowMs: number;
  expireAtMs: number;
  arg0: number;
  arg1: number;
  key: Uint8Array;
  value: Uint8Array | null;
  /** Stamp the result with the worker's times (a traced request; docs/tracing.md). Absent: false. */
  traced?: boolean;
  /**
   * Op.TXN run on the maps of the IO thread (--shards 0): the transaction as
   * its caller built it, run in place instead of encoded into `value` (no
   * ring to cross; src/shard/txn.ts, executeTxnAlone). Absent or null: the
   * part is in `value`. Never set for a backend that encodes commands.
   */
  txn?: TxnBranches | null;
}

export function commandBytes(keyBytes: number, valueBytes: number): number {
  return COMMAND_HEADER_BYTES + keyBytes + valueBytes;
}

/** Writes a command at `at` in `out`, which must have commandBytes(...) of room. */
export function encodeCommand(out: Uint8Array, at: number, c: CommandFields): void {
  const valueBytes = c.value === null ? 0 : c.value.length;
  out[at] = c.op;
  out[at + 1] = c.flags;
  out[at + 2] = c.traced === true ? 1 : 0;
  out[at + 3] = 0;
  writeU32(out, at + 4, c.tag);
  writeU32(out, at + 8, c.key.length);
  writeU32(out, at + 12, valueBytes);
  writeF64(out, at + 16, c.nowMs);
  writeF64(out, at + 24, c.expireAtMs);
  writeF64(out, at + 32, c.arg0);
  writeF64(out, at + 40, c.arg1);
  out.set(c.key, at + COMMAND_HEADER_BYTES);
  if (c.value !== null) out.set(c.value, at + COMMAND_HEADER_BYTES + c.key.length);
}

/**
 * A reusable reader over one encoded command: wrap() it around the bytes,
 * read the fields. Key and value are views into the same bytes (zero-copy),
 * valid as long as those bytes are.
 */
export class CommandView {
  op = 0;
  flags = 0;
  tag = 0;
  nowMs = 0;
  expireAtMs = 0;
  arg0 = 0;
  arg1 = 0;
  traced = false;
  key: Uint8Array = EMPTY;
  value: Uint8Array = EMPTY;
  /** Op.TXN run in place (CommandFields.txn); null when read from bytes. */
  txn: TxnBranches | null = null;

  /** Returns false when the bytes are not a well-formed command. */
  wrap(b: Uint8Array): boolean {
    if (b.length < COMMAND_HEADER_BYTES) return false;
    const keyBytes = readU32(b, 8);
    const valueBytes = readU32(b, 12);
    if (COMMAND_HEADER_BYTES + keyBytes + valueBytes !== b.length) return false;
    this.op = b[0]!;
    this.flags = b[1]!;
    this.traced = b[2] === 1;
    this.tag = readU32(b, 4);
    this.nowMs = readF64(b, 16);
    this.expireAtMs = readF64(b, 24);
    this.arg0 = readF64(b, 32);
    this.arg1 = readF64(b, 40);
    this.key = b.subarray(COMMAND_HEADER_BYTES, COMMAND_HEADER_BYTES + keyBytes);
    this.value = b.subarray(COMMAND_HEADER_BYTES + keyBytes, b.length);
    this.txn = null;
    return true;
  }

  /**
   * The same command read from its fields instead of its bytes (the maps on
   * the IO thread, --shards 0: no ring between, so nothing to encode). The
   * key and value stay the caller's views, valid until it returns.
   */
  of(c: CommandFields): this {
    return this.ofOp(c, c.tag, c.nowMs);
  }

  /** The same, for a command's fields given apart from its tag and time (a transaction's op: src/shard/txn.ts). */
  ofOp(c: Omit<CommandFields, "tag" | "nowMs">, tag: number, nowMs: number): this {
    this.op = c.op;
    this.flags = c.flags;
    this.tag = tag;
    this.nowMs = nowMs;
    this.expireAtMs = c.expireAtMs;
    this.arg0 = c.arg0;
    this.arg1 = c.arg1;
    this.traced = c.traced === true;
    this.key = c.key;
    this.value = c.value ?? EMPTY;
    this.txn = c.txn ?? null;
    return this;
  }
}

const EMPTY = new Uint8Array(0);

/** A command's outcome as plain data: what a Result holds besides its tag and tracing stamps. */
export interface ResultFields {
  status: number;
  flag: number;
  version: number;
  expireAtMs: number;
  num: number;
  value: Uint8Array | null;
}

/**
 * The outcome of one command. The executor fills a reused instance; the
 * host either encodes it into the notify ring (threaded mode) or hands it
 * straight to the IO loop (inline mode, --shards 0). `value` is a view into
 * the shard's memory, valid until the next command runs.
 */
export class Result {
  tag = 0;
  status = 0;
  flag = 0;
  version = 0;
  expireAtMs = 0;
  num = 0;
  value: Uint8Array | null = null;
  /** A traced command's result: the stamps below travel with it (see the layout above). */
  traced = false;
  tPicked = 0;
  tExecuted = 0;
  tCommitStart = 0;
  tCommitEnd = 0;
  fsync = 0;
  /** A cluster's traced command: its stamps as JSON (src/cluster/trace-stamps.ts); null otherwise. */
  clusterTrace: Uint8Array | null = null;

  reset(tag: number): this {
    this.tag = tag;
    this.status = 0;
    this.flag = 0;
    this.version = 0;
    this.expireAtMs = 0;
    this.num = 0;
    this.value = null;
    this.traced = false;
    this.clusterTrace = null;
    return this;
  }

  byteLength(): number {
    return (
      RESULT_HEADER_BYTES +
      (this.value === null ? 0 : this.value.length) +
      (this.traced ? TRACE_TRAILER_BYTES : 0) +
      (this.clusterTrace === null ? 0 : 4 + this.clusterTrace.length)
    );
  }

  encode(out: Uint8Array, at: number): void {
    writeU32(out, at, this.tag);
    out[at + 4] = this.status;
    out[at + 5] = this.flag;
    out[at + 6] = this.value === null ? 0 : 1;
    out[at + 7] = this.traced ? 1 : this.clusterTrace !== null ? 2 : 0;
    writeF64(out, at + 8, this.version);
    writeF64(out, at + 16, this.expireAtMs);
    writeF64(out, at + 24, this.num);
    writeU32(out, at + 32, this.value === null ? 0 : this.value.length);
    writeU32(out, at + 36, 0);
    if (this.value !== null) out.set(this.value, at + RESULT_HEADER_BYTES);
    if (this.traced) {
      const t = at + RESULT_HEADER_BYTES + (this.value === null ? 0 : this.value.length);
      writeF64(out, t, this.tPicked);
      writeF64(out, t + 8, this.tExecuted);
      writeF64(out, t + TRAILER_COMMIT_START, this.tCommitStart);
      writeF64(out, t + TRAILER_COMMIT_END, this.tCommitEnd);
      writeF64(out, t + 32, this.fsync);
    } else if (this.clusterTrace !== null) {
      const t = at + RESULT_HEADER_BYTES + (this.value === null ? 0 : this.value.length);
      writeU32(out, t, this.clusterTrace.length);
      out.set(this.clusterTrace, t + 4);
    }
  }

  /** Reads a result from bytes; `value` becomes a view into them. */
  decode(b: Uint8Array): boolean {
    if (b.length < RESULT_HEADER_BYTES) return false;
    const valueBytes = readU32(b, 32);
    const traced = b[7] === 1;
    const cluster = b[7] === 2 && b.length >= RESULT_HEADER_BYTES + valueBytes + 4;
    const clusterBytes = cluster ? 4 + readU32(b, RESULT_HEADER_BYTES + valueBytes) : 0;
    if (RESULT_HEADER_BYTES + valueBytes + (traced ? TRACE_TRAILER_BYTES : 0) + clusterBytes !== b.length) return false;
    this.tag = readU32(b, 0);
    this.status = b[4]!;
    this.flag = b[5]!;
    this.version = readF64(b, 8);
    this.expireAtMs = readF64(b, 16);
    this.num = readF64(b, 24);
    this.value = b[6] === 1 ? b.subarray(RESULT_HEADER_BYTES, RESULT_HEADER_BYTES + valueBytes) : null;
    this.traced = traced;
    this.clusterTrace = cluster ? b.subarray(RESULT_HEADER_BYTES + valueBytes + 4) : null;
    if (traced) {
      const t = RESULT_HEADER_BYTES + valueBytes;
      this.tPicked = readF64(b, t);
      this.tExecuted = readF64(b, t + 8);
      this.tCommitStart = readF64(b, t + TRAILER_COMMIT_START);
      this.tCommitEnd = readF64(b, t + TRAILER_COMMIT_END);
      this.fsync = readF64(b, t + 32);
    }
    return true;
  }
}

/** Packs scan keys as [u32 length][bytes]... */
export function packKeys(keys: readonly Uint8Array[]): Uint8Array {
  let size = 0;
  for (const k of keys) size += 4 + k.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const k of keys) {
    writeU32(out, at, k.length);
    out.set(k, at + 4);
    at += 4 + k.length;
  }
  return out;
}

export function unpackKeys(b: Uint8Array): Uint8Array[] {
  const keys: Uint8Array[] = [];
  let at = 0;
  while (at + 4 <= b.length) {
    const n = readU32(b, at);
    keys.push(b.slice(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return keys;
}

/** The numbers a shard reports for STATS, packed as doubles in this order. */
export const STATS_FIELDS = ["keys", "memoryBytes", "reads", "writes", "expired"] as const;
