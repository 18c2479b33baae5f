/**
 * Redis string commands, each mapped onto shard commands (src/shard/command.ts).
 * Reply shapes and error texts follow Redis 7.
 */
import { ErrorCode } from "../errors.js";
import { MAX_BATCH_KEYS } from "../limits.js";
import { FLAG_KEEP_TTL, FLAG_RETURN_OLD, FLAG_SET_EXPIRY, Op } from "../shard/command.js";
import type { TxnOp } from "../io/txn.js";
import { E, errorText, expiryOption, int, lower, op, versionIs } from "./args.js";
import * as reply from "./reply.js";
import type { RespRequest } from "./request.js";
import type { Result } from "../shard/command.js";

const enc = new TextEncoder();

export function get(q: RespRequest): void {
  const key = q.args[1]!;
  if (!q.keyOk(key)) return;
  q.cmd(Op.GET);
  q.one(key, gotten);
}

// The hottest steps, one function each for every request (no closure per command).
const gotten = (r: Result, q: RespRequest): void => q.reply(r.flag === 1 ? reply.bulk(r.value!) : reply.nil(q.proto));
const written = (r: Result, q: RespRequest): void => q.reply(r.status === ErrorCode.OK ? reply.OK : reply.nil(q.proto));
const oldValue = (r: Result, q: RespRequest): void => q.reply(reply.bulkOrNil(r.value, q.proto));

/** SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL] */
export function set(q: RespRequest): void {
  const a = q.args;
  const key = a[1]!;
  if (!q.keyOk(key)) return;
  let nx = false;
  let xx = false;
  let getOld = false;
  let keepTtl = false;
  let expireAtMs = 0;
  let expirySet = false;
  for (let i = 3; i < a.length; i++) {
    const opt = lower(a[i]!);
    if (opt === "nx" && !xx) nx = true;
    else if (opt === "xx" && !nx) xx = true;
    else if (opt === "get") getOld = true;
    else if (opt === "keepttl" && !expirySet) keepTtl = true;
    else if ((opt === "ex" || opt === "px" || opt === "exat" || opt === "pxat") && !expirySet && !keepTtl) {
      const e = expiryOption(opt, a[++i], q.nowMs, "set");
      if ("error" in e) return q.error(e.error);
      expireAtMs = e.atMs;
      expirySet = true;
    } else return q.error(E.syntax);
  }
  const c = q.cmd(nx ? Op.INSERT : xx ? Op.UPDATE : Op.PUT);
  c.value = a[2]!;
  c.expireAtMs = expireAtMs;
  c.flags = (keepTtl ? FLAG_KEEP_TTL : 0) | (getOld ? FLAG_RETURN_OLD : 0);
  // With GET the answer is the old value (carried by the result whether or not the write happened).
  q.one(key, getOld ? oldValue : written);
}

export function setnx(q: RespRequest): void {
  const key = q.args[1]!;
  if (!q.keyOk(key)) return;
  q.cmd(Op.INSERT).value = q.args[2]!;
  q.one(key, (r) => q.reply(reply.integer(r.status === ErrorCode.OK ? 1 : 0)));
}

function setWithTtl(q: RespRequest, unitMs: number, name: string): void {
  const key = q.args[1]!;
  if (!q.keyOk(key)) return;
  const n = int(q.args[2]!);
  if (n === null) return q.error(E.notInteger);
  if (n <= 0 || !Number.isSafeInteger(q.nowMs + n * unitMs))
    return q.error(`ERR invalid expire time in '${name}' command`);
  const c = q.cmd(Op.PUT);
  c.value = q.args[3]!;
  c.expireAtMs = q.nowMs + n * unitMs;
  q.one(key, () => q.reply(reply.OK));
}

export const setex = (q: RespRequest) => setWithTtl(q, 1000, "setex");
export const psetex = (q: RespRequest) => setWithTtl(q, 1, "psetex");

export function getset(q: RespRequest): void {
  const key = q.args[1]!;
  if (!q.keyOk(key)) return;
  const c = q.cmd(Op.PUT);
  c.value = q.args[2]!;
  c.flags = FLAG_RETURN_OLD;
  q.one(key, (r) => q.reply(reply.bulkOrNil(r.value, q.proto)));
}

export function getdel(q: RespRequest): void {
  const key = q.args[1]!;
  if (!q.keyOk(key)) return;
  q.cmd(Op.DELETE).flags = FLAG_RETURN_OLD;
  q.one(key, (r) => q.reply(reply.bulkOrNil(r.flag === 1 ? r.value : null, q.proto)));
}

/** GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST] */
export function getex(q: RespRequest): void {
  const a = q.args;
  const key = a[1]!;
  if (!q.keyOk(key)) return;
  let flags = 0;
  let expireAtMs = 0;
  if (a.length > 2) {
    const opt = lower(a[2]!);
    if (opt === "persist" && a.length === 3) flags = FLAG_SET_EXPIRY;
    else if ((opt === "ex" || opt === "px" || opt === "exat" || opt === "pxat") && a.length === 4) {
      const e = expiryOption(opt, a[3], q.nowMs, "getex");
      if ("error" in e) return q.error(e.error);
      expireAtMs = e.atMs;
      flags = FLAG_SET_EXPIRY;
    } else return q.error(E.syntax);
  }
  const c = q.cmd(Op.GETEX);
  c.flags = flags;
  c.expireAtMs = expireAtMs;
  q.one(key, (r) => q.reply(reply.bulkOrNil(r.flag === 1 ? r.value : null, q.proto)));
}

export function mget(q: RespRequest): void {
  q.eachKey(q.args.slice(1), Op.GET, (parts) =>
    q.reply(reply.array(parts.map((p) => (p.flag === 1 ? reply.bulk(p.value!) : reply.nil(q.proto))))),
  );
}

function pairs(q: RespRequest, name: string): Uint8Array[] | null {
  const a = q.args;
  if (a.length % 2 === 0) {
    q.error(`ERR wrong number of arguments for '${name}' command`);
    return null;
  }
  if ((a.length - 1) / 2 > MAX_BATCH_KEYS) {
    q.error(`ERR too many keys (the limit is ${MAX_BATCH_KEYS})`);
    return null;
  }
  for (let i = 1; i < a.length; i += 2) if (!q.keyOk(a[i]!)) return null;
  return a;
}

/**
 * The PUTs of MSET/MSETNX's pairs, in order (a key given twice: the last
 * value stays, as Redis). Views, not copies: the transaction is encoded
 * before the request returns (sendTxn), and MULTI copies what it queues.
 */
function puts(a: Uint8Array[]): TxnOp[] {
  const ops: TxnOp[] = [];
  for (let i = 1; i < a.length; i += 2) ops.push(op(Op.PUT, a[i]!, a[i + 1]!, 0));
  return ops;
}

/**
 * MSET: one transaction of PUTs, so all keys are set at once, across shards
 * (in a cluster, they must share a partition: CROSSSLOT otherwise).
 */
export function mset(q: RespRequest): void {
  const a = pairs(q, "mset");
  if (a === null) return;
  q.txn({ compares: [], success: puts(a), failure: [], verdictOnly: true }, () => q.reply(reply.OK));
}

/** MSETNX: one transaction: if every key is absent, set them all (1), else none (0). */
export function msetnx(q: RespRequest): void {
  const a = pairs(q, "msetnx");
  if (a === null) return;
  const success = puts(a);
  const compares = success.map((o) => versionIs(o.key, 0));
  q.txn({ compares, success, failure: [], verdictOnly: true }, (o) => q.reply(reply.integer(o.succeeded ? 1 : 0)));
}

function incrBy(q: RespRequest, key: Uint8Array, delta: Uint8Array): void {
  if (!q.keyOk(key)) return;
  q.cmd(Op.INCRBY).value = delta;
  q.one(key, (r) => {
    if (r.status === ErrorCode.OVERFLOW) return q.error(E.overflow);
    if (r.status !== ErrorCode.OK) return q.error(errorText(r.status));
    q.reply(reply.integerText(r.value!));
  });
}

const ONE = enc.encode("1");
const MINUS_ONE = enc.encode("-1");

export const incr = (q: RespRequest) => incrBy(q, q.args[1]!, ONE);
export const decr = (q: RespRequest) => incrBy(q, q.args[1]!, MINUS_ONE);
export const incrby = (q: RespRequest) => incrBy(q, q.args[1]!, q.args[2]!);
export function decrby(q: RespRequest): void {
  const d = new TextDecoder().decode(q.args[2]!);
  if (!/^-?(0|[1-9]\d*)$/.test(d)) return q.error(E.notInteger);
  if (d === "-9223372036854775808") return q.error("ERR decrement would overflow");
  incrBy(q, q.args[1]!, enc.encode(d.startsWith("-") ? d.slice(1) : d === "0" ? "0" : `-${d}`));
}

export function incrbyfloat(q: RespRequest): void {
  const key = q.args[1]!;
  if (!q.keyOk(key)) return;
  q.cmd(Op.INCRBYFLOAT).value = q.args[2]!;
  q.one(key, (r) => {
    if (r.status === ErrorCode.OVERFLOW) return q.error(E.nanOrInf);
    if (r.status !== ErrorCode.OK) return q.error(errorText(r.status));
    q.reply(reply.bulk(r.value!));
  });
}

export function append(q: RespRequest): void {
  const key = q.args[1]!;
  if (!q.keyOk(key)) return;
  const c = q.cmd(Op.APPEND);
  c.value = q.args[2]!;
  c.arg1 = q.session.resp.maxValueBytes;
  q.one(key, (r) => (r.status === ErrorCode.OK ? q.reply(reply.integer(r.num)) : q.error(errorText(r.status))));
}

export function strlen(q: RespRequest): void {
  const key = q.args[1]!;
  if (!q.keyOk(key)) return;
  q.cmd(Op.GET);
  q.one(key, (r) => q.reply(reply.integer(r.flag === 1 ? r.value!.length : 0)));
}

/** GETRANGE key start end: inclusive, negative indexes count from the end (as Redis). */
export function getrange(q: RespRequest): void {
  const key = q.args[1]!;
  if (!q.keyOk(key)) return;
  let start = int(q.args[2]!);
  let end = int(q.args[3]!);
  if (start === null || end === null) return q.error(E.notInteger);
  q.cmd(Op.GET);
  q.one(key, (r) => {
    const v = r.flag === 1 ? r.value! : EMPTY;
    const len = v.length;
    if (start! < 0 && end! < 0 && start! > end!) return q.reply(reply.bulk(EMPTY));
    if (start! < 0) start = len + start!;
    if (end! < 0) end = len + end!;
    if (start! < 0) start = 0;
    if (end! < 0) end = 0;
    if (end! >= len) end = len - 1;
    if (start! > end! || len === 0) return q.reply(reply.bulk(EMPTY));
    q.reply(reply.bulk(v.subarray(start!, end! + 1)));
  });
}

export function setrange(q: RespRequest): void {
  const key = q.args[1]!;
  if (!q.keyOk(key)) return;
  const offset = int(q.args[2]!);
  if (offset === null) return q.error(E.notInteger);
  if (offset < 0) return q.error(E.offset);
  const max = q.session.resp.maxValueBytes;
  if (offset + q.args[3]!.length > max) return q.error(E.tooBig);
  const c = q.cmd(Op.SETRANGE);
  c.value = q.args[3]!;
  c.arg0 = offset;
  c.arg1 = max;
  q.one(key, (r) => (r.status === ErrorCode.OK ? q.reply(reply.integer(r.num)) : q.error(errorText(r.status))));
}

const EMPTY = new Uint8Array(0);
