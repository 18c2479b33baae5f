/**
 * The router: from a decoded Operation to shard commands, and from shard
 * results back to the request that waits for them.
 *
 * Each request becomes one command per key (a get: one; an mget of 50 keys:
 * 50, to as many shards as the keys hash to). Every command carries a tag,
 * an index into the in-flight table below, so a result coming back from any
 * shard finds its request and its position in it in O(1). A request is
 * complete when its last part arrives; the connection then writes complete
 * requests in the order they were received (see connection.ts), which is
 * what keeps a pipelining client's answers in order even when its keys live
 * on different shards and the shards answer out of order.
 */
import { assert } from "../assert.js";
import { ErrorCode } from "../errors.js";
import { MAX_SCAN_COUNT } from "../limits.js";
import {
  encodeError,
  encodeMulti,
  encodePong,
  encodeScan,
  encodeSingle,
  encodeStats,
  OpKind,
  type Operation,
  type PartResult,
  type ShardStatsRow,
} from "../protocol/codec.js";
import { type CommandFields, FLAG_KEEP_TTL, Op, readF64, type Result, unpackKeys } from "../shard/command.js";
import { shardOf } from "./route.js";
import type { ShardBackend } from "./shards.js";

/** Whoever is owed the answer: a connection, in practice. */
export interface RequestOwner {
  /** A request of this owner is complete (its `out` is set). */
  requestDone(): void;
}

/** One request in flight. */
export class InFlight {
  /** The framed answer, once complete. */
  out: Uint8Array | null = null;
  remaining = 0;
  parts: PartResult[] | null = null;
  scanShard = 0;
  constructor(
    readonly owner: RequestOwner,
    readonly op: Operation,
  ) {}
}

const SCAN_SHARD_SPAN = 2 ** 32;

const opOfKind: Partial<Record<number, Op>> = {
  [OpKind.GET]: Op.GET,
  [OpKind.PUT]: Op.PUT,
  [OpKind.INSERT]: Op.INSERT,
  [OpKind.UPDATE]: Op.UPDATE,
  [OpKind.CAS]: Op.CAS,
  [OpKind.DELETE]: Op.DELETE,
  [OpKind.EXISTS]: Op.EXISTS,
  [OpKind.EXPIRE]: Op.EXPIRE,
  [OpKind.PERSIST]: Op.PERSIST,
  [OpKind.TTL]: Op.TTL,
  [OpKind.MGET]: Op.GET,
  [OpKind.MPUT]: Op.PUT,
  [OpKind.MDEL]: Op.DELETE,
};

export class Dispatcher {
  backend!: ShardBackend;
  private readonly startedMs = Date.now();
  connections = 0;
  /** In-flight table: tag -> request and part. Freed tags are reused (free list). */
  private reqs: (InFlight | null)[] = [];
  private partOf: Int32Array = new Int32Array(1024);
  private free: number[] = [];
  private readonly cmd: CommandFields = {
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

  /** Requests whose answers are awaited from shards. */
  get inFlight(): number {
    return this.reqs.length - this.free.length;
  }

  private tagFor(req: InFlight, part: number): number {
    let tag = this.free.pop();
    if (tag === undefined) {
      tag = this.reqs.length;
      this.reqs.push(null);
      if (tag >= this.partOf.length) {
        const grown = new Int32Array(this.partOf.length * 2);
        grown.set(this.partOf);
        this.partOf = grown;
      }
    }
    this.reqs[tag] = req;
    this.partOf[tag] = part;
    return tag;
  }

  private send(shard: number, op: Op, req: InFlight, part: number, key: Uint8Array, value: Uint8Array | null): void {
    const c = this.cmd;
    c.op = op;
    c.tag = this.tagFor(req, part);
    c.key = key;
    c.value = value;
    this.backend.send(shard, c);
  }

  /**
   * Starts a request. Either answers it at once (ping, invalid input) or
   * sends its commands; in both cases `req.owner.requestDone()` follows,
   * now or when the last shard answers.
   */
  dispatch(req: InFlight, nowMs: number): void {
    const op = req.op;
    if (op.errorCode !== 0) return this.finish(req, encodeError(op.id, op.errorCode, op.errorMessage));
    const c = this.cmd;
    c.nowMs = nowMs;
    c.flags = op.keepTtl ? FLAG_KEEP_TTL : 0;
    c.expireAtMs = op.expireAtMs > 0 ? op.expireAtMs : op.ttlMs > 0 ? nowMs + op.ttlMs : 0;
    c.arg0 = op.version;
    c.arg1 = 0;
    const n = this.backend.count;
    switch (op.kind) {
      case OpKind.PING:
        return this.finish(req, encodePong(op.id));
      case OpKind.EXPIRE:
        if (c.expireAtMs === 0) c.expireAtMs = nowMs; // EXPIRE with no time: expire now
        req.remaining = 1;
        return this.send(shardOf(op.keys[0]!, n), Op.EXPIRE, req, 0, op.keys[0]!, null);
      case OpKind.MGET:
      case OpKind.MPUT:
      case OpKind.MDEL: {
        const k = op.keys.length;
        req.remaining = k;
        req.parts = new Array<PartResult>(k);
        const cmdOp = opOfKind[op.kind]!;
        for (let i = 0; i < k; i++) {
          const key = op.keys[i]!;
          this.send(shardOf(key, n), cmdOp, req, i, key, cmdOp === Op.PUT ? op.values[i]! : null);
        }
        return;
      }
      case OpKind.STATS: {
        req.remaining = n;
        req.parts = new Array<PartResult>(n);
        for (let s = 0; s < n; s++) this.send(s, Op.STATS, req, s, EMPTY, null);
        return;
      }
      case OpKind.SCAN: {
        const shard = Math.floor(op.cursor / SCAN_SHARD_SPAN);
        if (shard >= n) return this.finish(req, encodeError(op.id, ErrorCode.INVALID_ARGUMENT, "invalid scan cursor"));
        req.scanShard = shard;
        req.remaining = 1;
        c.arg0 = op.cursor % SCAN_SHARD_SPAN;
        c.arg1 = Math.min(Math.max(op.count || 10, 1), MAX_SCAN_COUNT);
        return this.send(shard, Op.SCAN, req, 0, op.keys[0]!, null);
      }
      default: {
        const cmdOp = opOfKind[op.kind];
        if (cmdOp === undefined)
          return this.finish(req, encodeError(op.id, ErrorCode.UNKNOWN_OPERATION, `operation ${op.kind}`));
        req.remaining = 1;
        const key = op.keys[0]!;
        return this.send(shardOf(key, n), cmdOp, req, 0, key, op.values.length > 0 ? op.values[0]! : null);
      }
    }
  }

  private finish(req: InFlight, out: Uint8Array): void {
    req.out = out;
    req.owner.requestDone();
  }

  /** A shard's answer to one command. `r.value` is only valid during this call. */
  onResult(r: Result): void {
    const tag = r.tag;
    const req = this.reqs[tag];
    assert(req !== null && req !== undefined, "every result answers a command in flight");
    const part = this.partOf[tag]!;
    this.reqs[tag] = null;
    this.free.push(tag);
    const op = req.op;
    req.remaining--;
    assert(req.remaining >= 0, "a request receives each of its parts once");
    if (req.parts === null) {
      if (op.kind === OpKind.SCAN) {
        const shardDone = r.num === 0;
        const next = shardDone
          ? req.scanShard + 1 < this.backend.count
            ? (req.scanShard + 1) * SCAN_SHARD_SPAN
            : 0
          : req.scanShard * SCAN_SHARD_SPAN + r.num;
        return this.finish(req, encodeScan(op.id, next, unpackKeys(r.value ?? EMPTY)));
      }
      return this.finish(req, encodeSingle(op.id, op.kind, r));
    }
    req.parts[part] = {
      status: r.status,
      flag: r.flag,
      version: r.version,
      expireAtMs: r.expireAtMs,
      num: r.num,
      value: r.value === null ? null : r.value.slice(),
    };
    if (req.remaining > 0) return;
    if (op.kind === OpKind.STATS) {
      const rows: ShardStatsRow[] = req.parts.map((p, shard) => statsRow(shard, p.value!));
      return this.finish(req, encodeStats(op.id, rows, Date.now() - this.startedMs, this.connections));
    }
    this.finish(req, encodeMulti(op.id, op.kind, req.parts));
  }
}

const EMPTY = new Uint8Array(0);

function statsRow(shard: number, b: Uint8Array): ShardStatsRow {
  return {
    shard,
    keys: readF64(b, 0),
    memoryBytes: readF64(b, 8),
    reads: readF64(b, 16),
    writes: readF64(b, 24),
    expired: readF64(b, 32),
  };
}
