/**
 * Transactions on the IO thread: a transaction split into one part per
 * shard it touches, sent to all of them in one step, and the parts' answers
 * merged back into one outcome (docs/transactions.md).
 *
 * Sending every part in one synchronous step is what orders transactions:
 * the IO thread is the only producer of every request ring, so if A's parts
 * are written before B's, every shard that holds both meets A first. Two
 * transactions can therefore never wait for each other in opposite orders
 * at the shards' barrier (src/shard/txn-barrier.ts): the IO thread is the
 * sequencer, as in Calvin, or in Dragonfly's transaction queue.
 *
 * A transaction with parts on several shards needs one barrier slot (a few
 * shared integers the participants meet on); slots are few and fixed, and
 * a transaction that finds none waits here, in order, for one to free.
 */
import { ErrorCode } from "../errors.js";
import { MAX_KEY_BYTES, TXN_MAX_BYTES, TXN_MAX_OPS } from "../limits.js";
import type { PartResult } from "../protocol/codec.js";
import { isWrite, Op } from "../shard/command.js";
import {
  encodeTxnPart,
  isTxnOp,
  setTxnPartId,
  TXN_NO_RESULTS,
  TXN_FAILURE_READS_ONLY,
  TXN_SUCCESS_READS_ONLY,
  type TxnCompare,
  type TxnOp,
  type TxnPartSpec,
  unpackResults,
} from "../shard/txn.js";
import type { Dispatcher, InFlight } from "./dispatch.js";

export type { TxnCompare, TxnOp } from "../shard/txn.js";
export { CompareRelation, CompareTarget } from "../shard/txn.js";

export interface TxnSpec {
  compares: TxnCompare[];
  success: TxnOp[];
  failure: TxnOp[];
  /** Only the verdict is wanted, not each op's result (MSET): the outcome's results are empty. */
  verdictOnly?: boolean;
}

export interface TxnOutcome {
  /** OK, or the failure that stopped the whole transaction (nothing of it was applied, or: see applied). */
  status: number;
  /** Every compare held: the success branch ran (else the failure branch). */
  succeeded: boolean;
  /** The chosen branch's results, in the branch's order. */
  results: PartResult[];
}

/** Why a transaction cannot be sent; null when it can. */
export function checkTxn(spec: TxnSpec, maxValueBytes: number): { code: ErrorCode; message: string } | null {
  const ops = spec.compares.length + spec.success.length + spec.failure.length;
  if (ops > TXN_MAX_OPS)
    return { code: ErrorCode.TXN_TOO_LARGE, message: `${ops} compares and ops; the limit is ${TXN_MAX_OPS}` };
  let bytes = 0;
  for (const c of spec.compares) {
    if (c.key.length === 0 || c.key.length > MAX_KEY_BYTES)
      return { code: ErrorCode.KEY_TOO_LARGE, message: "a compare's key is empty or too large" };
    bytes += c.key.length + (c.value?.length ?? 0);
  }
  for (const ops of [spec.success, spec.failure])
    for (const o of ops) {
      if (!isTxnOp(o.op))
        return { code: ErrorCode.INVALID_ARGUMENT, message: `op ${o.op} cannot be part of a transaction` };
      if (o.op !== Op.FLUSH && (o.key.length === 0 || o.key.length > MAX_KEY_BYTES))
        return { code: ErrorCode.KEY_TOO_LARGE, message: "an op's key is empty or too large" };
      if ((o.value?.length ?? 0) > maxValueBytes)
        return { code: ErrorCode.VALUE_TOO_LARGE, message: "an op's value is over the node's --max-value-bytes" };
      bytes += o.key.length + (o.value?.length ?? 0);
    }
  if (bytes > TXN_MAX_BYTES)
    return {
      code: ErrorCode.TXN_TOO_LARGE,
      message: `${bytes} bytes of keys and values; the limit is ${TXN_MAX_BYTES}`,
    };
  return null;
}

/**
 * One transaction in flight for a request: its parts' answers gathered,
 * then merged. The request's onResult hands every result of the parts here
 * (part = the index of the participant).
 */
export class TxnGather {
  private readonly parts: (PartResult | null)[];
  private received = 0;
  /** The barrier slot (several participants), released once every part answered. */
  slot = -1;

  constructor(
    readonly participants: readonly number[],
    private readonly then: (o: TxnOutcome) => void,
  ) {
    this.parts = new Array<PartResult | null>(participants.length).fill(null);
  }

  onPart(part: number, status: number, flag: number, value: Uint8Array | null, d: Dispatcher): void {
    this.parts[part] = {
      status,
      flag,
      version: 0,
      expireAtMs: 0,
      num: 0,
      // A copy: `value` is valid only during the call. No results (MSET's verdict only): nothing to copy.
      value: value === null || value.length === 0 ? null : value.slice(),
    };
    if (++this.received < this.parts.length) return;
    if (this.slot >= 0) d.releaseTxnSlot(this.slot);
    this.then(this.merge());
  }

  private merge(): TxnOutcome {
    for (const p of this.parts)
      if (p!.status !== ErrorCode.OK) return { status: p!.status, succeeded: false, results: [] };
    const succeeded = this.parts[0]!.flag === 1;
    const results: PartResult[] = [];
    for (const p of this.parts) {
      if ((p!.flag === 1) !== succeeded) return { status: ErrorCode.INTERNAL, succeeded: false, results: [] }; // the barrier gives one verdict
      if (p!.value === null) continue;
      for (const r of unpackResults(p!.value)) {
        // FLUSH runs on every participant: its answers are alike, the first stands. A value is a view
        // into the part's bytes, which onPart copied already: it is this outcome's own.
        if (results[r.tag] === undefined) results[r.tag] = r;
      }
    }
    return { status: ErrorCode.OK, succeeded, results };
  }
}

/**
 * Splits `spec` by shard and sends every part for `req` (parts numbered by
 * participant). Returns the gather the request must feed its results to, or
 * the reason it was refused (nothing sent).
 */
export function sendTxn(
  d: Dispatcher,
  req: InFlight,
  spec: TxnSpec,
  nowMs: number,
  then: (o: TxnOutcome) => void,
  /**
   * Called with the gather before the first part is sent: inline shards
   * answer inside send(), so the request must know its gather by then.
   */
  register: (g: TxnGather) => void = () => {},
): TxnGather | { code: ErrorCode; message: string } {
  const flags = txnFlags(spec);
  if (d.txnInPlace) {
    // One shard, on this thread, run inside send() while the spec's views are valid: the
    // transaction goes as it is, with nothing encoded for the shard to decode (decision 0338).
    const gather = new TxnGather(ONE_PARTICIPANT, then);
    register(gather);
    const c = d.begin(Op.TXN, nowMs);
    c.flags = flags;
    c.arg0 = -1;
    c.arg1 = 1;
    c.txn = spec;
    d.send(0, req, 0, EMPTY);
    return gather;
  }
  const byShard = new Map<number, TxnPartSpec>();
  const partFor = (shard: number): TxnPartSpec => {
    let p = byShard.get(shard);
    if (p === undefined) {
      p = { id: 0, participants: [], compares: [], success: [], failure: [] };
      byShard.set(shard, p);
    }
    return p;
  };
  for (const c of spec.compares) (partFor(d.shardOf(c.key)).compares as TxnCompare[]).push(c);
  for (const [branch, ops] of [
    ["success", spec.success],
    ["failure", spec.failure],
  ] as const) {
    for (const [index, op] of ops.entries()) {
      const shards = op.op === Op.FLUSH ? Array.from({ length: d.shardCount }, (_, s) => s) : [d.shardOf(op.key)];
      for (const s of shards) (partFor(s)[branch] as { index: number; op: TxnOp }[]).push({ index, op });
    }
  }
  if (byShard.size === 0) partFor(0); // nothing to compare or do: one empty part answers "succeeded"
  const participants = [...byShard.keys()].sort((a, b) => a - b);
  if (participants.length > 1 && !d.crossShardTxns)
    return {
      code: ErrorCode.CROSS_PARTITION,
      message: `the transaction's keys are in ${participants.length} partitions; give them one hash tag, as {user:1}:a and {user:1}:b`,
    };
  // Encoded now, into bytes of their own: the spec's keys and values may be views that do
  // not outlive this call (a RESP parser's), and a transaction may wait for a barrier slot.
  const encoded = participants.map((shard) => {
    const part = byShard.get(shard)!;
    part.participants = participants.length > 1 ? participants : [];
    return encodeTxnPart(part, nowMs);
  });
  const gather = new TxnGather(participants, then);
  register(gather);
  const send = (slot: number, id: number): void => {
    gather.slot = slot;
    for (let i = 0; i < participants.length; i++) {
      setTxnPartId(encoded[i]!, id);
      const c = d.begin(Op.TXN, nowMs);
      c.flags = flags;
      c.arg0 = slot;
      c.arg1 = participants.length;
      c.value = encoded[i]!;
      d.send(participants[i]!, req, i, EMPTY);
    }
  };
  if (participants.length === 1) send(-1, 0);
  else d.withTxnSlot(send);
  return gather;
}

/** Op.TXN's flags for `spec`: which branches write nothing, and whether only the verdict is wanted. */
function txnFlags(spec: TxnSpec): number {
  return (
    (readsOnly(spec.success) ? TXN_SUCCESS_READS_ONLY : 0) |
    (readsOnly(spec.failure) ? TXN_FAILURE_READS_ONLY : 0) |
    (spec.verdictOnly === true ? TXN_NO_RESULTS : 0)
  );
}

function readsOnly(ops: TxnOp[]): boolean {
  for (const o of ops) if (isWrite(o.op)) return false;
  return true;
}

const EMPTY = new Uint8Array(0);
/** A transaction on the one shard of the IO thread: its only participant. */
const ONE_PARTICIPANT: readonly number[] = Object.freeze([0]);
