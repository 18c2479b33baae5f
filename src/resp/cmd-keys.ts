/**
 * Redis keyspace commands: DEL, EXISTS, TYPE, RENAME, RENAMENX, COPY, the EXPIRE family,
 * TTL, SCAN, KEYS, DBSIZE, FLUSHDB.
 */
import { SCAN_SHARD_SPAN, statsRow } from "../io/native.js";
import { MAX_SCAN_COUNT } from "../limits.js";
import { EXPIRE_GT, EXPIRE_LT, EXPIRE_NX, EXPIRE_XX, Op, unpackKeys } from "../shard/command.js";
import type { TxnCompare, TxnOp } from "../io/txn.js";
import { E, int, lower, op, sameKey, text, versionIs } from "./args.js";
import { globMatch, literalPrefix } from "../glob.js";
import * as reply from "./reply.js";
import type { RespRequest } from "./request.js";

function countKeys(q: RespRequest, op: Op): void {
  q.eachKey(q.args.slice(1), op, (parts) => q.reply(reply.integer(parts.reduce((n, p) => n + p.flag, 0))));
}

/** DEL and UNLINK: how many of the keys existed. UNLINK frees memory at once too: no lazy-free thread here. */
export const del = (q: RespRequest) => countKeys(q, Op.DELETE);
/** EXISTS counts a key once per mention, as Redis does. */
export const exists = (q: RespRequest) => countKeys(q, Op.EXISTS);

export function type(q: RespRequest): void {
  const key = q.args[1]!;
  if (!q.keyOk(key)) return;
  q.cmd(Op.EXISTS);
  q.one(key, (r) => q.reply(reply.simple(r.flag === 1 ? "string" : "none")));
}

/** Attempts of RENAME, RENAMENX and COPY whose source keeps changing under them. */
export const MOVE_ATTEMPTS = 32;

/**
 * RENAME, RENAMENX and COPY, atomic: read the source (value, version, TTL),
 * then one transaction that applies only if the source still has that
 * version (and, for NX, the destination is absent): delete the source
 * (not for COPY), write the destination with the source's TTL. Both keys
 * change at once, on one shard or two; a reader never sees both or neither.
 * A concurrent write of the source makes the compare fail: read again, at
 * most MOVE_ATTEMPTS times. In a cluster both keys must be in one partition
 * (CROSSSLOT otherwise, as Redis Cluster).
 */
function move(q: RespRequest, keep: boolean, nx: boolean, done: (moved: boolean) => void): void {
  const src = q.args[1]!.slice();
  const dst = q.args[2]!.slice();
  if (!q.keyOk(src) || !q.keyOk(dst)) return;
  const attempt = (n: number): void => {
    q.cmd(Op.GET);
    q.one(src, (r) => {
      if (r.flag !== 1) return keep ? q.reply(reply.integer(0)) : q.error(E.noSuchKey);
      if (sameKey(src, dst)) return done(!nx);
      const compares: TxnCompare[] = [versionIs(src, r.version)];
      if (nx) compares.push(versionIs(dst, 0));
      const success: TxnOp[] = keep ? [] : [op(Op.DELETE, src, null, 0)];
      success.push(op(Op.PUT, dst, r.value!.slice(), r.expireAtMs));
      q.txn({ compares, success, failure: nx ? [op(Op.EXISTS, dst, null, 0)] : [] }, (o) => {
        if (o.succeeded) return done(true);
        if (nx && o.results[0]!.flag === 1) return done(false);
        if (n + 1 >= MOVE_ATTEMPTS)
          return q.error(`ERR the source key changed ${MOVE_ATTEMPTS} times while it was read; nothing was applied`);
        attempt(n + 1);
      });
    });
  };
  attempt(0);
}

/** RENAME src dst: atomic (see move()); a source that does not exist is an error. */
export const rename = (q: RespRequest) => move(q, false, false, () => q.reply(reply.OK));

/** RENAMENX src dst: 1 when renamed, 0 when dst exists. */
export const renamenx = (q: RespRequest) => move(q, false, true, (moved) => q.reply(reply.integer(moved ? 1 : 0)));

/** COPY src dst [DB 0] [REPLACE]: 1 when copied, 0 when src is absent or dst exists (without REPLACE). */
export function copy(q: RespRequest): void {
  const a = q.args;
  let replace = false;
  for (let i = 3; i < a.length; i++) {
    const opt = lower(a[i]!);
    if (opt === "replace") replace = true;
    else if (opt === "db" && i + 1 < a.length) {
      const db = int(a[++i]!);
      if (db === null) return q.error(E.notInteger);
      if (db !== 0) return q.error("ERR DB index is out of range");
    } else return q.error(E.syntax);
  }
  if (sameKey(a[1]!, a[2]!)) return q.error("ERR source and destination objects are the same");
  move(q, true, !replace, (moved) => q.reply(reply.integer(moved ? 1 : 0)));
}

/** EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT key time [NX|XX|GT|LT] */
function expireGeneric(q: RespRequest, unitMs: number, absolute: boolean, name: string): void {
  const a = q.args;
  const key = a[1]!;
  if (!q.keyOk(key)) return;
  const n = int(a[2]!);
  if (n === null) return q.error(E.notInteger);
  let conditions = 0;
  for (let i = 3; i < a.length; i++) {
    const opt = lower(a[i]!);
    if (opt === "nx") conditions |= EXPIRE_NX;
    else if (opt === "xx") conditions |= EXPIRE_XX;
    else if (opt === "gt") conditions |= EXPIRE_GT;
    else if (opt === "lt") conditions |= EXPIRE_LT;
    else return q.error(`ERR Unsupported option ${text(a[i]!)}`);
  }
  if ((conditions & EXPIRE_NX) !== 0 && conditions !== EXPIRE_NX)
    return q.error("ERR NX and XX, GT or LT options at the same time are not compatible");
  if ((conditions & EXPIRE_GT) !== 0 && (conditions & EXPIRE_LT) !== 0)
    return q.error("ERR GT and LT options at the same time are not compatible");
  const atMs = absolute ? n * unitMs : q.nowMs + n * unitMs;
  if (!Number.isSafeInteger(atMs)) return q.error(`ERR invalid expire time in '${name}' command`);
  const c = q.cmd(Op.EXPIRE);
  // A time at or before now deletes the key (the shard does that); 0 would mean "no expiry".
  c.expireAtMs = atMs <= 0 ? 1 : atMs;
  c.arg1 = conditions;
  q.one(key, (r) => q.reply(reply.integer(r.flag)));
}

export const expire = (q: RespRequest) => expireGeneric(q, 1000, false, "expire");
export const pexpire = (q: RespRequest) => expireGeneric(q, 1, false, "pexpire");
export const expireat = (q: RespRequest) => expireGeneric(q, 1000, true, "expireat");
export const pexpireat = (q: RespRequest) => expireGeneric(q, 1, true, "pexpireat");

function ttlGeneric(q: RespRequest, ms: boolean): void {
  const key = q.args[1]!;
  if (!q.keyOk(key)) return;
  q.cmd(Op.TTL);
  q.one(key, (r) => {
    const t = r.num;
    // Redis rounds the seconds TTL: (ms + 500) / 1000.
    q.reply(reply.integer(t < 0 || ms ? t : Math.floor((t + 500) / 1000)));
  });
}

export const ttl = (q: RespRequest) => ttlGeneric(q, false);
export const pttl = (q: RespRequest) => ttlGeneric(q, true);

export function persist(q: RespRequest): void {
  const key = q.args[1]!;
  if (!q.keyOk(key)) return;
  q.cmd(Op.PERSIST);
  q.one(key, (r) => q.reply(reply.integer(r.flag)));
}

interface ScanOptions {
  pattern: Uint8Array | null;
  count: number;
  typeOk: boolean;
}

function scanOptions(q: RespRequest, from: number): ScanOptions | null {
  const a = q.args;
  const o: ScanOptions = { pattern: null, count: 10, typeOk: true };
  for (let i = from; i < a.length; i++) {
    const opt = lower(a[i]!);
    const v = a[i + 1];
    if (v === undefined) {
      q.error(E.syntax);
      return null;
    }
    i++;
    if (opt === "match") o.pattern = v.slice();
    else if (opt === "count") {
      const n = int(v);
      if (n === null) {
        q.error(E.notInteger);
        return null;
      }
      if (n < 1) {
        q.error(E.syntax);
        return null;
      }
      o.count = Math.min(n, MAX_SCAN_COUNT);
    } else if (opt === "type") o.typeOk = lower(v) === "string";
    else {
      q.error(E.syntax);
      return null;
    }
  }
  return o;
}

/**
 * SCAN cursor [MATCH p] [COUNT n] [TYPE t]. The cursor names a shard and a
 * position in it (shard * 2^32 + the shard's own cursor), so one SCAN call
 * walks part of one shard. Same guarantee as Redis: a key present for the
 * whole scan is returned at least once.
 */
export function scan(q: RespRequest): void {
  const cursor = int(q.args[1]!);
  if (cursor === null || cursor < 0) return q.error(E.invalidCursor);
  const o = scanOptions(q, 2);
  if (o === null) return;
  const shard = Math.floor(cursor / SCAN_SHARD_SPAN);
  if (shard >= q.d.shardCount) return q.error(E.invalidCursor);
  const c = q.cmd(Op.SCAN);
  c.arg0 = cursor % SCAN_SHARD_SPAN;
  c.arg1 = o.count;
  q.oneAt(shard, o.pattern === null ? EMPTY : literalPrefix(o.pattern), (r) => {
    const next =
      r.num === 0 ? (shard + 1 < q.d.shardCount ? (shard + 1) * SCAN_SHARD_SPAN : 0) : shard * SCAN_SHARD_SPAN + r.num;
    const keys = o.typeOk ? unpackKeys(r.value!).filter((k) => o.pattern === null || globMatch(o.pattern, k)) : [];
    q.reply(reply.array([reply.bulk(String(next)), reply.array(keys.map((k) => reply.bulk(k)))]));
  });
}

/** KEYS pattern: walks every shard to the end. Like Redis, O(keys): for debugging, not production. */
export function keys(q: RespRequest): void {
  const pattern = q.args[1]!.slice();
  const prefix = literalPrefix(pattern);
  const found: Uint8Array[] = [];
  const step = (shard: number, cursor: number): void => {
    const c = q.cmd(Op.SCAN);
    c.arg0 = cursor;
    c.arg1 = MAX_SCAN_COUNT;
    q.oneAt(shard, prefix, (r) => {
      for (const k of unpackKeys(r.value!)) if (globMatch(pattern, k)) found.push(k);
      if (r.num !== 0) return step(shard, r.num);
      if (shard + 1 < q.d.shardCount) return step(shard + 1, 0);
      q.reply(reply.array(found.map((k) => reply.bulk(k))));
    });
  };
  step(0, 0);
}

export function dbsize(q: RespRequest): void {
  q.everyShard(Op.STATS, (parts) =>
    q.reply(reply.integer(parts.reduce((n, p, s) => n + statsRow(s, p.value!).keys, 0))),
  );
}

/** FLUSHDB / FLUSHALL [ASYNC|SYNC]: both run synchronously on every shard. */
export function flush(q: RespRequest): void {
  if (q.args.length > 2) return q.error(E.syntax);
  if (q.args.length === 2) {
    const mode = lower(q.args[1]!);
    if (mode !== "async" && mode !== "sync") return q.error(E.syntax);
  }
  q.everyShard(Op.FLUSH, () => q.reply(reply.OK));
}

const EMPTY = new Uint8Array(0);
