/**
 * A transaction's part on one shard: compares on this shard's keys, then one
 * of two branches of ordinary shard commands (docs/transactions.md).
 *
 * The IO thread splits a transaction by shard (src/io/txn.ts) and sends each
 * participant one Op.TXN command whose value is its part:
 *
 *   u32 compares, u32 success ops, u32 failure ops, u32 participants,
 *   f64 txn id (0 when the transaction has one participant),
 *   then per participant u16 shard, padded to 4 bytes,
 *   then each compare:  u8 target, u8 relation, u16 0, u32 keyBytes,
 *                       u32 valueBytes, u32 0, f64 number, key, value
 *   then each op:       u32 bytes, an encoded command (command.ts) whose tag
 *                       is the op's index in its branch (the transaction's
 *                       own numbering, so results merge back in order)
 *
 * The shard evaluates its compares, learns the transaction's verdict (its
 * own when it is the only participant; all participants' together otherwise:
 * src/shard/txn-barrier.ts), runs the chosen branch in order, and answers
 * one result: flag 1 when the success branch ran, value = the branch's
 * results, each `u32 bytes, encoded Result`.
 *
 * Pure: no threads, no files. The worker adds the barrier and the journal;
 * a replicated partition applies a one-participant part from its Raft log.
 */
import { assert } from "../assert.js";
import { ErrorCode } from "../errors.js";
import {
  CommandView,
  commandBytes,
  encodeCommand,
  type CommandFields,
  isWrite,
  Op,
  readF64,
  readU32,
  RESULT_HEADER_BYTES,
  Result,
  type ResultFields,
  TXN_NO_RESULTS,
  writeF64,
  writeU32,
} from "./command.js";
import type { ShardCore } from "./execute.js";

/** Op.TXN's flags: the success (failure) branch writes nothing on any participant, so it needs no journal record. */
export { TXN_FAILURE_READS_ONLY, TXN_NO_RESULTS, TXN_SUCCESS_READS_ONLY } from "./command.js";

/** What a compare looks at. */
export const CompareTarget = {
  /** The key's version; 0 when it is absent (so `version = 0` means "does not exist"). */
  VERSION: 1,
  /** The key's value, byte for byte (lexicographic for < and >); false for an absent key. */
  VALUE: 2,
} as const;

export const CompareRelation = { EQUAL: 1, NOT_EQUAL: 2, LESS: 3, GREATER: 4 } as const;

export interface TxnCompare {
  key: Uint8Array;
  target: number;
  relation: number;
  /** VERSION: the version compared against. */
  number: number;
  /** VALUE: the value compared against. */
  value: Uint8Array | null;
}

/** One op of a branch: a shard command (only ops that touch one key, or FLUSH/SCAN-free keyless ones). */
export type TxnOp = Omit<CommandFields, "tag" | "nowMs">;

export interface TxnPartSpec {
  id: number;
  participants: readonly number[];
  compares: readonly TxnCompare[];
  success: readonly { index: number; op: TxnOp }[];
  failure: readonly { index: number; op: TxnOp }[];
}

/**
 * A whole transaction on one shard, as its caller built it (src/io/txn.ts):
 * what an Op.TXN command carries instead of encoded bytes when the shard
 * runs on the IO thread (CommandFields.txn). Each op's result is numbered
 * by its place in its branch, as an encoded part's tags number them.
 */
export interface TxnBranches {
  readonly compares: readonly TxnCompare[];
  readonly success: readonly TxnOp[];
  readonly failure: readonly TxnOp[];
}

/** Where runBranch takes a branch's ops from: a part's bytes (TxnPart) or a caller's objects (InPlaceTxn). */
interface BranchOps {
  /** How many ops branch `success` has. */
  count(success: boolean): number;
  /** Points `view` at op `i` of branch `success` (its tag: `i`). */
  load(view: CommandView, success: boolean, i: number): void;
}

/** Ops a transaction may carry: the ones that act on one key, and FLUSH. */
export function isTxnOp(op: number): boolean {
  return (
    op === Op.GET ||
    op === Op.PUT ||
    op === Op.INSERT ||
    op === Op.UPDATE ||
    op === Op.CAS ||
    op === Op.DELETE ||
    op === Op.EXISTS ||
    op === Op.EXPIRE ||
    op === Op.PERSIST ||
    op === Op.TTL ||
    op === Op.INCRBY ||
    op === Op.INCRBYFLOAT ||
    op === Op.APPEND ||
    op === Op.SETRANGE ||
    op === Op.GETEX ||
    op === Op.FLUSH
  );
}

const COMPARE_HEADER_BYTES = 24;

function headerBytes(participants: number): number {
  return 24 + ((participants * 2 + 3) & ~3);
}

export function txnPartBytes(p: TxnPartSpec): number {
  let n = headerBytes(p.participants.length);
  for (const c of p.compares) n += COMPARE_HEADER_BYTES + c.key.length + (c.value?.length ?? 0);
  for (const o of p.success) n += 4 + commandBytes(o.op.key.length, o.op.value?.length ?? 0);
  for (const o of p.failure) n += 4 + commandBytes(o.op.key.length, o.op.value?.length ?? 0);
  return n;
}

const scratch: CommandFields = {
  op: Op.GET,
  flags: 0,
  tag: 0,
  nowMs: 0,
  expireAtMs: 0,
  arg0: 0,
  arg1: 0,
  key: new Uint8Array(0),
  value: null,
};

/** Where an encoded part holds its transaction id (set once a multi-shard transaction gets one: setTxnPartId). */
const ID_AT = 16;

export function setTxnPartId(encoded: Uint8Array, id: number): void {
  writeF64(encoded, ID_AT, id);
}

/** Encodes a part; every op gets the transaction's `nowMs`. */
export function encodeTxnPart(p: TxnPartSpec, nowMs: number): Uint8Array {
  const out = new Uint8Array(txnPartBytes(p));
  writeU32(out, 0, p.compares.length);
  writeU32(out, 4, p.success.length);
  writeU32(out, 8, p.failure.length);
  writeU32(out, 12, p.participants.length);
  writeF64(out, ID_AT, p.id);
  for (const [i, s] of p.participants.entries()) {
    out[24 + i * 2] = s & 0xff;
    out[25 + i * 2] = s >>> 8;
  }
  let at = headerBytes(p.participants.length);
  for (const c of p.compares) {
    const v = c.value ?? EMPTY;
    out[at] = c.target;
    out[at + 1] = c.relation;
    writeU32(out, at + 4, c.key.length);
    writeU32(out, at + 8, v.length);
    writeF64(out, at + 16, c.number);
    out.set(c.key, at + COMPARE_HEADER_BYTES);
    out.set(v, at + COMPARE_HEADER_BYTES + c.key.length);
    at += COMPARE_HEADER_BYTES + c.key.length + v.length;
  }
  at = encodeOps(out, at, p.success, nowMs);
  encodeOps(out, at, p.failure, nowMs);
  return out;
}

/** Writes a branch's ops, each as its length and an encoded command; returns where the next begins. */
function encodeOps(out: Uint8Array, at: number, ops: TxnPartSpec["success"], nowMs: number): number {
  // Field by field into one scratch command (MSET sends ten ops a request: no object per op).
  for (const { index, op } of ops) {
    const bytes = commandBytes(op.key.length, op.value?.length ?? 0);
    writeU32(out, at, bytes);
    scratch.op = op.op;
    scratch.flags = op.flags;
    scratch.expireAtMs = op.expireAtMs;
    scratch.arg0 = op.arg0;
    scratch.arg1 = op.arg1;
    scratch.key = op.key;
    scratch.value = op.value;
    scratch.traced = op.traced;
    scratch.tag = index;
    scratch.nowMs = nowMs;
    encodeCommand(out, at + 4, scratch);
    at += 4 + bytes;
  }
  return at;
}

const EMPTY = new Uint8Array(0);
/** A part alone (no other participant): one shared empty list, never written to. */
const NO_PARTICIPANTS: number[] = Object.freeze([]) as unknown as number[];

/** A decoded part: views into the command's value bytes. */
export class TxnPart implements BranchOps {
  compares = 0;
  success = 0;
  failure = 0;
  id = 0;
  participants: number[] = [];
  /** Byte offsets of each compare, then of each op (success ops first). */
  private readonly compareAt: number[] = [];
  private readonly opAt: number[] = [];
  bytes: Uint8Array = EMPTY;

  /** False when the bytes are not a well-formed part. */
  wrap(b: Uint8Array): boolean {
    if (b.length < 24) return false;
    this.bytes = b;
    this.compares = readU32(b, 0);
    this.success = readU32(b, 4);
    this.failure = readU32(b, 8);
    const n = readU32(b, 12);
    this.id = readF64(b, 16);
    if (n > 0xffff || headerBytes(n) > b.length) return false;
    // A new array when there are participants (the journal keeps it: worker.ts's beginPart); the offsets are
    // this object's own, reused part after part.
    this.participants = n === 0 ? NO_PARTICIPANTS : [];
    for (let i = 0; i < n; i++) this.participants.push(b[24 + i * 2]! | (b[25 + i * 2]! << 8));
    let at = headerBytes(n);
    this.compareAt.length = 0;
    for (let i = 0; i < this.compares; i++) {
      if (at + COMPARE_HEADER_BYTES > b.length) return false;
      this.compareAt.push(at);
      at += COMPARE_HEADER_BYTES + readU32(b, at + 4) + readU32(b, at + 8);
    }
    this.opAt.length = 0;
    for (let i = 0; i < this.success + this.failure; i++) {
      if (at + 4 > b.length) return false;
      this.opAt.push(at + 4);
      at += 4 + readU32(b, at);
    }
    return at === b.length;
  }

  /** The bytes of op `i` of the success (i < success) or failure branch, as one encoded command. */
  op(branchSuccess: boolean, i: number): Uint8Array {
    const at = this.opAt[branchSuccess ? i : this.success + i]!;
    return this.bytes.subarray(at, at + readU32(this.bytes, at - 4));
  }

  count(success: boolean): number {
    return success ? this.success : this.failure;
  }

  load(view: CommandView, success: boolean, i: number): void {
    view.wrap(this.op(success, i));
  }

  /** Whether compare `i` holds on `core` at `nowMs` (a read: an expired key reads as absent). */
  holds(core: ShardCore, i: number, nowMs: number): boolean {
    const b = this.bytes;
    const at = this.compareAt[i]!;
    const target = b[at]!;
    const keyBytes = readU32(b, at + 4);
    const key = b.subarray(at + COMPARE_HEADER_BYTES, at + COMPARE_HEADER_BYTES + keyBytes);
    const start = at + COMPARE_HEADER_BYTES + keyBytes;
    const value = target === CompareTarget.VALUE ? b.subarray(start, start + readU32(b, at + 8)) : null;
    return compareHolds(core, nowMs, key, target, b[at + 1]!, readF64(b, at + 16), value);
  }

  /** Every compare holds. */
  allHold(core: ShardCore, nowMs: number): boolean {
    for (let i = 0; i < this.compares; i++) if (!this.holds(core, i, nowMs)) return false;
    return true;
  }

  /** Every key the part's branch `success` writes (what an abort must restore), and no others. */
  writtenKeys(success: boolean): Uint8Array[] {
    const keys: Uint8Array[] = [];
    const view = new CommandView();
    const n = success ? this.success : this.failure;
    for (let i = 0; i < n; i++) {
      view.wrap(this.op(success, i));
      if (isWrite(view.op) && view.op !== Op.FLUSH) keys.push(view.key);
    }
    return keys;
  }

  /** Whether branch `success` holds a FLUSH (an abort cannot restore a whole map from before-images). */
  flushes(success: boolean): boolean {
    const view = new CommandView();
    const n = success ? this.success : this.failure;
    for (let i = 0; i < n; i++) {
      view.wrap(this.op(success, i));
      if (view.op === Op.FLUSH) return true;
    }
    return false;
  }
}

/** Whether a compare (its key, target, relation, and the version or value it names) holds on `core` at `nowMs`. */
function compareHolds(
  core: ShardCore,
  nowMs: number,
  key: Uint8Array,
  target: number,
  relation: number,
  number: number,
  value: Uint8Array | null,
): boolean {
  const state = core.peek(key, nowMs);
  if (target === CompareTarget.VERSION) return relate(relation, Math.sign(state.version - number));
  if (target === CompareTarget.VALUE) {
    if (state.value === null) return false;
    return relate(relation, compareBytes(state.value, value ?? EMPTY));
  }
  return false;
}

function relate(relation: number, sign: number): boolean {
  switch (relation) {
    case CompareRelation.EQUAL:
      return sign === 0;
    case CompareRelation.NOT_EQUAL:
      return sign !== 0;
    case CompareRelation.LESS:
      return sign < 0;
    case CompareRelation.GREATER:
      return sign > 0;
    default:
      return false;
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return Math.sign(a.length - b.length);
}

/**
 * Runs branch `success` of `part` on `core`, each op through `run` (the
 * host's way to execute: the journal's, or the core's own), and returns the
 * branch's results packed as the Op.TXN result's value.
 */
export function runBranch(
  part: BranchOps,
  success: boolean,
  run: (c: CommandView, r: Result) => void,
  flags = 0,
): Uint8Array {
  const n = part.count(success);
  const view = branchView;
  const r = branchResult;
  if ((flags & TXN_NO_RESULTS) !== 0) {
    for (let i = 0; i < n; i++) {
      part.load(view, success, i);
      r.reset(view.tag);
      run(view, r);
    }
    return NO_RESULTS;
  }
  // Each result laid out in a scratch buffer as it comes (its value is a view valid only until the next
  // op runs), then copied out once: one allocation for the branch instead of one per op.
  let at = 0;
  for (let i = 0; i < n; i++) {
    part.load(view, success, i);
    r.reset(view.tag);
    run(view, r);
    const bytes = r.byteLength();
    if (at + 4 + bytes > resultsScratch.length) {
      const grown = new Uint8Array(Math.max(resultsScratch.length * 2, at + 4 + bytes));
      grown.set(resultsScratch.subarray(0, at));
      resultsScratch = grown;
    }
    writeU32(resultsScratch, at, bytes);
    r.encode(resultsScratch, at + 4);
    at += 4 + bytes;
  }
  const out = resultsScratch.slice(0, at);
  // A huge branch's scratch is not kept for the next one.
  if (resultsScratch.length > RESULTS_SCRATCH_KEEP_BYTES) resultsScratch = new Uint8Array(RESULTS_SCRATCH_KEEP_BYTES);
  return out;
}

/** runBranch's command view and result, reused: a branch's ops run one after another, never nested. */
const branchView = new CommandView();
const branchResult = new Result();
/** Where runBranch lays out a branch's results; grown as needed, shrunk back past this size. */
const RESULTS_SCRATCH_KEEP_BYTES = 64 * 1024;
let resultsScratch = new Uint8Array(4096);

/** One op's result in a transaction's answer: a Result's fields, without the tracing ones. */
export interface TxnOpResult extends ResultFields {
  /** The op's place in its branch. */
  tag: number;
}

/**
 * Unpacks a part's results (as runBranch packed them, each an encoded
 * Result: command.ts): each value is a view into `b`. Read field by field
 * into one plain object per op, not a Result (its tracing fields unused).
 */
export function unpackResults(b: Uint8Array): TxnOpResult[] {
  const out: TxnOpResult[] = [];
  let at = 0;
  while (at + 4 <= b.length) {
    const n = readU32(b, at);
    const s = at + 4;
    const valueBytes = readU32(b, s + 32);
    assert(n >= RESULT_HEADER_BYTES + valueBytes && s + n <= b.length, "a packed result lies within its part's answer");
    out.push({
      tag: readU32(b, s),
      status: b[s + 4]!,
      flag: b[s + 5]!,
      version: readF64(b, s + 8),
      expireAtMs: readF64(b, s + 16),
      num: readF64(b, s + 24),
      value: b[s + 6] === 1 ? b.subarray(s + RESULT_HEADER_BYTES, s + RESULT_HEADER_BYTES + valueBytes) : null,
    });
    at = s + n;
  }
  return out;
}

/**
 * A transaction's ops read from the caller's objects (CommandFields.txn):
 * what the maps on the IO thread run, with nothing encoded and decoded
 * between the request and the map. One instance, reused: a transaction
 * runs start to end before the next (transactions do not nest).
 */
class InPlaceTxn implements BranchOps {
  t: TxnBranches = NO_BRANCHES;
  nowMs = 0;

  allHold(core: ShardCore): boolean {
    for (const c of this.t.compares)
      if (!compareHolds(core, this.nowMs, c.key, c.target, c.relation, c.number, c.value)) return false;
    return true;
  }

  count(success: boolean): number {
    return (success ? this.t.success : this.t.failure).length;
  }

  load(view: CommandView, success: boolean, i: number): void {
    view.ofOp((success ? this.t.success : this.t.failure)[i]!, i, this.nowMs);
  }
}

const NO_BRANCHES: TxnBranches = { compares: [], success: [], failure: [] };
const inPlace = new InPlaceTxn();
/** executeTxnAlone's decoded part, reused (a part runs start to end before the next). */
const alonePart = new TxnPart();

/**
 * A one-participant part, start to end, on a core without a journal (a
 * replicated partition applying its log, an in-memory shard) or with one
 * the caller commits after (the maps on the IO thread): compares, then the
 * branch they chose. `r` gets flag 1 when the success branch ran. The part
 * is `c.txn` when the command carries the transaction itself, else its bytes.
 */
export function executeTxnAlone(core: ShardCore, c: CommandView, r: Result): void {
  let part: BranchOps;
  let success: boolean;
  if (c.txn !== null) {
    inPlace.t = c.txn;
    inPlace.nowMs = c.nowMs;
    success = inPlace.allHold(core);
    part = inPlace;
  } else {
    if (!alonePart.wrap(c.value)) {
      r.status = ErrorCode.INVALID_ARGUMENT;
      return;
    }
    success = alonePart.allHold(core, c.nowMs);
    part = alonePart;
  }
  r.flag = success ? 1 : 0;
  try {
    r.value = runBranch(part, success, (v, res) => core.execute(v, res), c.flags);
  } finally {
    // Neither the caller's objects nor the command's bytes are kept past the call.
    inPlace.t = NO_BRANCHES;
    alonePart.bytes = EMPTY;
  }
}

const NO_RESULTS = new Uint8Array(0);
