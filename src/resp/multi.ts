/**
 * MULTI, EXEC, DISCARD, WATCH, UNWATCH: Redis transactions on the
 * transactions below the protocols (src/io/txn.ts).
 *
 * After MULTI a command is checked (known, arity, allowed in a transaction,
 * its own argument checks) and queued; one that fails a check is answered
 * with its error and makes EXEC answer EXECABORT, as in Redis. EXEC runs
 * every queued command's handler against a CaptureRequest, which records
 * the shard commands the handler's one()/many()/eachKey() would send
 * instead of sending them, puts them all, in order, into one transaction's
 * success branch, and once the transaction ran feeds each handler its own
 * results: its continuation makes its reply, exactly as outside MULTI. So
 * the whole EXEC is atomic and isolated across this node's shards, and a
 * command's own error (INCR of a non-integer) is its element of the reply
 * while the others run, as in Redis.
 *
 * WATCH reads each key's version (0 when absent); EXEC compares each with
 * what it was: if any changed, the transaction runs nothing and EXEC
 * answers a null array.
 *
 * Only commands whose handler takes one step on its keys can be queued
 * (IN_MULTI below); the others (RENAME, COPY, MSETNX, which read first;
 * KEYS, SCAN, DBSIZE, INFO, which walk shards; connection and server
 * commands) are refused at queue time: docs/resp.md.
 */
import { ErrorCode } from "../errors.js";
import type { TxnCompare, TxnOp, TxnOutcome, TxnSpec } from "../io/txn.js";
import { CompareRelation, CompareTarget } from "../io/txn.js";
import { TXN_MAX_BYTES, TXN_MAX_OPS } from "../limits.js";
import type { PartResult } from "../protocol/codec.js";
import { respErrorText } from "../outcomes.js";
import { isDataOutcome, isWrite, Op, Result } from "../shard/command.js";
import { lookupBytes } from "./commands.js";
import * as reply from "./reply.js";
import { type Continuation, RespRequest, type RespSession, type WatchState } from "./request.js";

/** Commands that may be queued after MULTI: one step on their keys (or none at all). */
const IN_MULTI = new Set([
  "get",
  "set",
  "setnx",
  "setex",
  "psetex",
  "getset",
  "getdel",
  "getex",
  "mget",
  "mset",
  "incr",
  "decr",
  "incrby",
  "decrby",
  "incrbyfloat",
  "append",
  "strlen",
  "getrange",
  "setrange",
  "del",
  "unlink",
  "exists",
  "type",
  "expire",
  "pexpire",
  "expireat",
  "pexpireat",
  "ttl",
  "pttl",
  "persist",
  "flushdb",
  "flushall",
  "ping",
  "echo",
  "time",
  "select",
  "unwatch",
]);

/** Commands that act at once even inside MULTI (as in Redis). */
export const NOT_QUEUED = new Set(["exec", "discard", "multi", "watch", "quit", "reset"]);

/** One command's recorded step: the shard commands it would send, and what makes its reply of their results. */
interface Step {
  ops: TxnOp[];
  deliver(results: PartResult[]): void;
}

const EMPTY = new Uint8Array(0);

/**
 * A command run without sending anything: its first step is recorded, and
 * its reply (or error) is kept instead of written. Handlers cannot tell it
 * from a RespRequest.
 */
export class CaptureRequest extends RespRequest {
  override readonly capturing = true;
  step: Step | null = null;
  /** The command's reply, once made (at once, or when its step's results are delivered). */
  answer: Uint8Array | null = null;
  /** Why the command cannot be part of a transaction (it takes more than one step, or walks shards). */
  refused: string | null = null;
  private delivered = false;

  override reply(bytes: Uint8Array): void {
    if (this.answer === null) this.answer = bytes;
  }

  override error(text: string): void {
    this.reply(reply.error(text));
  }

  private refuse(why: string): void {
    this.refused ??= why;
    this.error(`ERR ${this.name()} cannot be part of a transaction: ${why}`);
  }

  private name(): string {
    return new TextDecoder().decode(this.args[0]!).toUpperCase();
  }

  private record(ops: TxnOp[], deliver: (results: PartResult[]) => void): void {
    if (this.step !== null || this.delivered) return this.refuse("it takes more than one step");
    this.step = { ops, deliver };
  }

  /** A copy of the command just built with cmd(), for `key`. */
  private op(key: Uint8Array): TxnOp {
    const c = this.d.cmd;
    return {
      op: c.op,
      flags: c.flags,
      expireAtMs: c.expireAtMs,
      arg0: c.arg0,
      arg1: c.arg1,
      key: key.slice(),
      value: c.value === null ? null : c.value.slice(),
    };
  }

  /** Failures of one op (not its data outcomes) are the command's error, as RespRequest answers them. */
  private failed(ops: TxnOp[], results: PartResult[]): boolean {
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!.op;
      const status = results[i]!.status;
      if (!isDataOutcome(op, status)) {
        this.error(respErrorText(status, isWrite(op)));
        return true;
      }
    }
    return false;
  }

  override one(key: Uint8Array, then: Continuation): void {
    const ops = [this.op(key)];
    this.record(ops, (results) => {
      if (!this.failed(ops, results)) then(Object.assign(new Result(), results[0]!), this);
    });
  }

  override oneAt(): void {
    this.refuse("it walks the shards");
  }

  override many(n: number, build: (i: number) => Uint8Array, then: (parts: PartResult[]) => void): void {
    const ops: TxnOp[] = [];
    for (let i = 0; i < n; i++) {
      const key = build(i);
      ops.push(this.op(key));
    }
    this.record(ops, (results) => {
      if (!this.failed(ops, results)) then(results);
    });
  }

  override everyShard(op: Op, then: (parts: PartResult[]) => void, arg0 = 0): void {
    if (op !== Op.FLUSH) return this.refuse("it asks every shard");
    this.cmd(op).arg0 = arg0;
    const ops = [this.op(EMPTY)];
    const shards = this.d.shardCount;
    this.record(ops, (results) => {
      if (!this.failed(ops, results)) then(Array.from({ length: shards }, () => results[0]!));
    });
  }

  override txn(spec: TxnSpec, then: (o: TxnOutcome) => void): void {
    if (spec.compares.length > 0 || spec.failure.length > 0) return this.refuse("it has conditions of its own");
    const ops = spec.success.map((o) => ({
      ...o,
      key: o.key.slice(),
      value: o.value === null ? null : o.value.slice(),
    }));
    this.record(ops, (results) => {
      if (!this.failed(ops, results)) then({ status: ErrorCode.OK, succeeded: true, results });
    });
  }

  /** Hands the step its results; the continuation makes the answer. */
  deliver(results: PartResult[]): void {
    const step = this.step!;
    this.delivered = true;
    this.step = null;
    step.deliver(results);
    // A continuation that answered nothing (it would have sent a second step): say so.
    if (this.answer === null) this.refuse("it takes more than one step");
  }
}

/** Runs a command's handler against a CaptureRequest (no shard is asked). */
function capture(q: RespRequest, args: Uint8Array[]): CaptureRequest {
  const c = new CaptureRequest(q.owner, q.session, args, q.nowMs);
  lookupBytes(args[0]!)!.run(c);
  return c;
}

/**
 * A command after MULTI (known, authenticated, its arity right): checked,
 * then queued (+QUEUED), or answered with its error, which aborts EXEC.
 */
export function enqueue(q: RespRequest, name: string): void {
  const m = q.session.multi!;
  const abort = (text: string): void => {
    m.dirty = true;
    q.error(text);
  };
  if (!IN_MULTI.has(name))
    return abort(
      `ERR ${name.toUpperCase()} cannot be part of a transaction in Piccolo (it reads before it writes, walks the shards, or acts on the connection; docs/resp.md)`,
    );
  if (m.queued.length >= TXN_MAX_OPS) return abort(`ERR too many commands in this MULTI (the limit is ${TXN_MAX_OPS})`);
  let bytes = 0;
  for (const a of q.args) bytes += a.length;
  if (m.bytes + bytes > TXN_MAX_BYTES)
    return abort(`ERR this MULTI's commands are over ${TXN_MAX_BYTES} bytes (the transaction limit)`);
  // The command's own checks, now: a syntax error aborts EXEC (Redis would answer it as EXEC's element).
  const c = capture(q, q.args);
  if (c.refused !== null || (c.step === null && c.answer !== null && c.answer[0] === 45) /* '-' */)
    return abort(new TextDecoder().decode(c.answer!.subarray(1, c.answer!.length - 2)));
  if (m.dirty) return q.reply(reply.QUEUED); // nothing will run: keep nothing
  m.queued.push(q.args.map((a) => a.slice()));
  m.bytes += bytes;
  q.reply(reply.QUEUED);
}

export function multi(q: RespRequest): void {
  if (q.session.multi !== null) return q.error("ERR MULTI calls can not be nested");
  q.session.multi = { queued: [], bytes: 0, dirty: false };
  q.reply(reply.OK);
}

export function discard(q: RespRequest): void {
  if (q.session.multi === null) return q.error("ERR DISCARD without MULTI");
  q.session.multi = null;
  q.session.watch = null;
  q.reply(reply.OK);
}

/** Forgets the connection's transaction and watches (RESET, DISCARD). */
export function clearTransaction(s: RespSession): void {
  s.multi = null;
  s.watch = null;
}

export function exec(q: RespRequest): void {
  const s = q.session;
  const m = s.multi;
  if (m === null) return q.error("ERR EXEC without MULTI");
  const watch = s.watch;
  s.multi = null;
  s.watch = null;
  if (m.dirty) return q.error("EXECABORT Transaction discarded because of previous errors.");
  const run = (): void => execute(q, m.queued, watch);
  if (watch !== null && watch.pending > 0) watch.waiters.push(run);
  else run();
}

function execute(q: RespRequest, queued: Uint8Array[][], watch: WatchState | null): void {
  const compares: TxnCompare[] = [];
  for (const w of watch?.keys.values() ?? [])
    compares.push({
      key: w.key,
      target: CompareTarget.VERSION,
      relation: CompareRelation.EQUAL,
      number: w.version,
      value: null,
    });
  // Each handler again, at EXEC's time (relative expiries count from EXEC, as in Redis).
  const commands = queued.map((args) => capture(q, args));
  const success: TxnOp[] = [];
  const at: number[] = [];
  for (const c of commands) {
    at.push(success.length);
    if (c.step !== null) success.push(...c.step.ops);
  }
  const answer = (): void => {
    q.reply(reply.array(commands.map((c) => c.answer ?? reply.error("ERR the command made no reply"))));
  };
  if (success.length === 0 && compares.length === 0) return answer();
  q.txn({ compares, success, failure: [] }, (o) => {
    if (!o.succeeded) return q.reply(reply.nilArray(q.proto));
    for (const [i, c] of commands.entries())
      if (c.step !== null) c.deliver(o.results.slice(at[i], at[i]! + c.step.ops.length));
    answer();
  });
}

/** WATCH key [key ...]: each key's version now, for EXEC to compare. */
export function watch(q: RespRequest): void {
  const s = q.session;
  if (s.multi !== null) return q.error("ERR WATCH inside MULTI is not allowed");
  const keys = q.args.slice(1);
  for (const k of keys) if (!q.keyOk(k)) return;
  const w = (s.watch ??= { keys: new Map(), pending: 0, waiters: [] });
  if (w.keys.size + keys.length > TXN_MAX_OPS)
    return q.error(`ERR too many watched keys (the limit is ${TXN_MAX_OPS})`);
  const fresh = keys.filter((k) => !w.keys.has(keyId(k))).map((k) => k.slice());
  // Until the versions come back the keys count as watched and unknown: a failed read leaves -1, which no version equals.
  for (const k of fresh) w.keys.set(keyId(k), { key: k, version: -1 });
  w.pending++;
  const done = (): void => {
    if (--w.pending > 0) return;
    const waiters = w.waiters;
    w.waiters = [];
    for (const f of waiters) f();
  };
  if (fresh.length === 0) {
    done();
    return q.reply(reply.OK);
  }
  // However the request ends (its failure is answered in request.ts), an EXEC waiting on this WATCH goes on.
  q.afterFinish = done;
  q.many(
    fresh.length,
    (i) => {
      q.cmd(Op.EXISTS);
      return fresh[i]!;
    },
    (parts) => {
      for (const [i, p] of parts.entries()) {
        const e = w.keys.get(keyId(fresh[i]!));
        if (e !== undefined && e.key === fresh[i]) e.version = p.status === ErrorCode.OK ? p.version : -1;
      }
      q.reply(reply.OK);
    },
  );
}

export function unwatch(q: RespRequest): void {
  if (!q.capturing) q.session.watch = null;
  q.reply(reply.OK);
}

function keyId(k: Uint8Array): string {
  return Buffer.from(k.buffer, k.byteOffset, k.length).toString("latin1");
}
