/**
 * The shard's state machine: commands in, results out, no IO and no clock.
 *
 * Like etcd's raft core, this is pure on purpose: the thread host
 * (worker.ts) or the IO loop itself (inline mode, --shards 0) feeds it
 * commands and carries the results away; a Raft host will feed it committed
 * log entries the same way. Given the same commands in the same order it
 * produces the same map and the same results, because every decision that
 * depends on time uses the command's own `nowMs`.
 *
 * Versions: one counter per shard, bumped by every write of any key, so a
 * key's version never repeats, not even across delete and re-insert, and a
 * compare-and-swap can never be fooled by a key that was deleted and written
 * again in between (the ABA problem). Changing only a TTL (expire, persist)
 * does not bump the version: the value did not change.
 */
import { assert } from "../assert.js";
import { ErrorCode } from "../errors.js";
import {
  type CommandView,
  EXPIRE_GT,
  EXPIRE_LT,
  EXPIRE_NX,
  EXPIRE_XX,
  FLAG_KEEP_TTL,
  FLAG_RETURN_OLD,
  FLAG_SET_EXPIRY,
  Op,
  packKeys,
  type Result,
  writeF64,
} from "./command.js";
import { addFloat, addInteger } from "./numbers.js";
import { executeTxnAlone } from "./txn.js";
import { ShardStore } from "./store.js";

/**
 * Where a durable host records what each write did to the map (the shard
 * journal, src/journal/effects.ts). Called for every change a command makes;
 * never for a key removed because its TTL ran out, which needs no record.
 */
export interface EffectSink {
  set(key: Uint8Array, value: Uint8Array, version: number, expiresAtMs: number): void;
  del(key: Uint8Array): void;
  expiry(key: Uint8Array, expiresAtMs: number): void;
  flush(): void;
}

/** Where changes go for watchers: the map's effects, and keys removed because their TTL ran out. */
export interface ChangeSink extends EffectSink {
  expired(key: Uint8Array): void;
}

export class ShardCore {
  readonly store: ShardStore;
  /** The last version handed out; the next write takes lastVersion + 1. */
  lastVersion = 0;
  reads = 0;
  writes = 0;
  expired = 0;
  private readonly statsBytes = new Uint8Array(5 * 8);
  /**
   * Set while serving a read outside the log (a replicated partition's
   * leader reading after ReadIndex): an expired key is reported absent but
   * not removed, so replicas' maps stay identical (src/cluster/partition-machine.ts).
   */
  readOnly = false;
  /** The durable host's journal (null: in memory only, or a replicated partition, whose log is Raft's). */
  effects: EffectSink | null = null;
  /** The shard's change history for watchers (src/shard/history.ts); null: nobody can watch. */
  changes: ChangeSink | null = null;

  private noteSet(key: Uint8Array, value: Uint8Array, version: number, expiresAtMs: number): void {
    this.effects?.set(key, value, version, expiresAtMs);
    this.changes?.set(key, value, version, expiresAtMs);
  }

  private noteDel(key: Uint8Array): void {
    this.effects?.del(key);
    this.changes?.del(key);
  }

  private noteExpiry(key: Uint8Array, expiresAtMs: number): void {
    this.effects?.expiry(key, expiresAtMs);
    this.changes?.expiry(key, expiresAtMs);
  }

  constructor(store: ShardStore = new ShardStore()) {
    this.store = store;
  }

  /** The slot of a live key, or -1. An expired key found here is removed on the spot. */
  private live(key: Uint8Array, nowMs: number): number {
    const slot = this.store.find(key);
    if (slot < 0) return -1;
    const exp = this.store.expiresAtMs(slot);
    if (exp !== 0 && exp <= nowMs) {
      if (this.readOnly) return -1;
      this.changes?.expired(key);
      this.store.deleteSlot(slot);
      this.expired++;
      return -1;
    }
    return slot;
  }

  private write(c: CommandView, r: Result, slot: number, value: Uint8Array = c.value): void {
    const expireAtMs = (c.flags & FLAG_KEEP_TTL) !== 0 && slot >= 0 ? this.store.expiresAtMs(slot) : c.expireAtMs;
    // The old value must be copied out before the store reuses its memory.
    if ((c.flags & FLAG_RETURN_OLD) !== 0 && slot >= 0) r.value = this.store.value(slot).slice();
    const version = ++this.lastVersion;
    if (slot >= 0) this.store.overwrite(slot, c.key, value, version, expireAtMs);
    else this.store.set(c.key, value, version, expireAtMs);
    this.noteSet(c.key, value, version, expireAtMs);
    this.writes++;
    r.version = version;
    r.expireAtMs = expireAtMs;
    r.flag = slot >= 0 ? 1 : 0; // 1: replaced an existing key, 0: created
  }

  private current(r: Result, slot: number): void {
    r.version = this.store.version(slot);
    r.expireAtMs = this.store.expiresAtMs(slot);
  }

  /**
   * A key's state for a transaction's compare at `nowMs`: version 0 and no
   * value when it is absent or expired. Removes nothing (a compare is a read).
   */
  peek(key: Uint8Array, nowMs: number): { version: number; value: Uint8Array | null } {
    const slot = this.store.find(key);
    if (slot < 0) return ABSENT;
    const exp = this.store.expiresAtMs(slot);
    if (exp !== 0 && exp <= nowMs) return ABSENT;
    return { version: this.store.version(slot), value: this.store.value(slot) };
  }

  /** Applies one command, filling `r` (already reset with the command's tag). */
  execute(c: CommandView, r: Result): void {
    const store = this.store;
    switch (c.op) {
      case Op.GET: {
        this.reads++;
        const slot = this.live(c.key, c.nowMs);
        if (slot < 0) return;
        r.flag = 1;
        this.current(r, slot);
        r.value = store.value(slot);
        return;
      }
      case Op.PUT:
        this.write(c, r, this.live(c.key, c.nowMs));
        return;
      case Op.RESTORE: {
        const version = c.arg0;
        if (!Number.isSafeInteger(version) || version < 1) {
          r.status = ErrorCode.INVALID_ARGUMENT;
          return;
        }
        const existed = store.find(c.key) >= 0;
        store.set(c.key, c.value, version, c.expireAtMs);
        this.noteSet(c.key, c.value, version, c.expireAtMs);
        if (version > this.lastVersion) this.lastVersion = version;
        this.writes++;
        r.version = version;
        r.expireAtMs = c.expireAtMs;
        r.flag = existed ? 1 : 0;
        return;
      }
      case Op.INSERT: {
        const slot = this.live(c.key, c.nowMs);
        if (slot >= 0) {
          r.status = ErrorCode.ALREADY_EXISTS;
          this.current(r, slot);
          if ((c.flags & FLAG_RETURN_OLD) !== 0) r.value = store.value(slot);
          return;
        }
        this.write(c, r, slot);
        return;
      }
      case Op.UPDATE: {
        const slot = this.live(c.key, c.nowMs);
        if (slot < 0) {
          r.status = ErrorCode.NOT_FOUND;
          return;
        }
        this.write(c, r, slot);
        return;
      }
      case Op.CAS: {
        const slot = this.live(c.key, c.nowMs);
        if (slot < 0 || store.version(slot) !== c.arg0) {
          r.status = ErrorCode.VERSION_MISMATCH;
          if (slot >= 0) this.current(r, slot);
          return;
        }
        this.write(c, r, slot);
        return;
      }
      case Op.DELETE: {
        const slot = this.live(c.key, c.nowMs);
        if (slot < 0) return;
        if (c.arg0 !== 0 && store.version(slot) !== c.arg0) {
          r.status = ErrorCode.VERSION_MISMATCH;
          this.current(r, slot);
          return;
        }
        if ((c.flags & FLAG_RETURN_OLD) !== 0) {
          this.current(r, slot);
          r.value = store.value(slot).slice();
        }
        store.deleteSlot(slot);
        this.noteDel(c.key);
        this.writes++;
        r.flag = 1;
        return;
      }
      case Op.EXISTS: {
        this.reads++;
        const slot = this.live(c.key, c.nowMs);
        if (slot < 0) return;
        r.flag = 1;
        this.current(r, slot);
        return;
      }
      case Op.EXPIRE: {
        const slot = this.live(c.key, c.nowMs);
        if (slot < 0) return;
        if (c.arg1 !== 0 && !expireConditionHolds(c.arg1, store.expiresAtMs(slot), c.expireAtMs)) {
          this.current(r, slot);
          return;
        }
        r.flag = 1;
        this.writes++;
        if (c.expireAtMs <= c.nowMs) {
          // As Redis: a TTL in the past deletes the key now.
          store.deleteSlot(slot);
          this.noteDel(c.key);
          return;
        }
        store.setExpiry(slot, c.expireAtMs);
        this.noteExpiry(c.key, c.expireAtMs);
        this.current(r, slot);
        return;
      }
      case Op.PERSIST: {
        const slot = this.live(c.key, c.nowMs);
        if (slot < 0 || store.expiresAtMs(slot) === 0) return;
        store.setExpiry(slot, 0);
        this.noteExpiry(c.key, 0);
        this.writes++;
        r.flag = 1;
        this.current(r, slot);
        return;
      }
      case Op.TTL: {
        this.reads++;
        const slot = this.live(c.key, c.nowMs);
        if (slot < 0) {
          r.num = -2;
          return;
        }
        r.flag = 1;
        this.current(r, slot);
        r.num = r.expireAtMs === 0 ? -1 : r.expireAtMs - c.nowMs;
        return;
      }
      case Op.SCAN: {
        const keys: Uint8Array[] = [];
        const prefix = c.key;
        const nowMs = c.nowMs;
        const next = store.scan(c.arg0, c.arg1, (slot) => {
          const exp = store.expiresAtMs(slot);
          if (exp !== 0 && exp <= nowMs) return;
          const key = store.key(slot);
          if (prefix.length > 0 && !startsWith(key, prefix)) return;
          keys.push(key.slice());
        });
        r.num = next;
        r.value = packKeys(keys);
        return;
      }
      case Op.STATS: {
        const b = this.statsBytes;
        writeF64(b, 0, store.size);
        writeF64(b, 8, store.memoryBytes());
        writeF64(b, 16, this.reads);
        writeF64(b, 24, this.writes);
        writeF64(b, 32, this.expired);
        r.value = b;
        // Keys with a TTL (Redis's INFO keyspace `expires=`), in num rather than a sixth f64: the
        // journal appends its figures right after these five (src/io/native.ts statsRow).
        r.num = store.ttlKeys;
        return;
      }
      case Op.INCRBY:
      case Op.INCRBYFLOAT: {
        const slot = this.live(c.key, c.nowMs);
        const current = slot < 0 ? null : store.value(slot);
        const next = c.op === Op.INCRBY ? addInteger(current, c.value) : addFloat(current, c.value);
        if (typeof next === "number") {
          r.status = next;
          return;
        }
        c.flags |= FLAG_KEEP_TTL; // INCR keeps the TTL, as in Redis
        this.write(c, r, slot, next);
        r.value = next;
        return;
      }
      case Op.APPEND: {
        const slot = this.live(c.key, c.nowMs);
        const current = slot < 0 ? EMPTY : store.value(slot);
        if (current.length + c.value.length > c.arg1) {
          r.status = ErrorCode.VALUE_TOO_LARGE;
          return;
        }
        const next = new Uint8Array(current.length + c.value.length);
        next.set(current, 0);
        next.set(c.value, current.length);
        c.flags |= FLAG_KEEP_TTL;
        this.write(c, r, slot, next);
        r.num = next.length;
        return;
      }
      case Op.SETRANGE: {
        const slot = this.live(c.key, c.nowMs);
        const current = slot < 0 ? EMPTY : store.value(slot);
        const offset = c.arg0;
        if (c.value.length === 0) {
          r.num = current.length; // nothing to write: Redis neither creates nor changes the key
          return;
        }
        const length = Math.max(current.length, offset + c.value.length);
        if (length > c.arg1) {
          r.status = ErrorCode.VALUE_TOO_LARGE;
          return;
        }
        const next = new Uint8Array(length);
        next.set(current, 0);
        next.set(c.value, offset);
        c.flags |= FLAG_KEEP_TTL;
        this.write(c, r, slot, next);
        r.num = length;
        return;
      }
      case Op.GETEX: {
        this.reads++;
        const slot = this.live(c.key, c.nowMs);
        if (slot < 0) return;
        r.flag = 1;
        r.value = store.value(slot).slice();
        if ((c.flags & FLAG_SET_EXPIRY) !== 0) {
          this.writes++;
          if (c.expireAtMs !== 0 && c.expireAtMs <= c.nowMs) {
            store.deleteSlot(slot);
            this.noteDel(c.key);
            return;
          }
          store.setExpiry(slot, c.expireAtMs);
          this.noteExpiry(c.key, c.expireAtMs);
        }
        this.current(r, slot);
        return;
      }
      case Op.FLUSH:
        r.num = store.size;
        store.clear();
        this.effects?.flush();
        this.changes?.flush();
        this.writes++;
        return;
      case Op.TXN:
        // A part with one participant; a worker runs parts with several itself (txn-barrier.ts).
        executeTxnAlone(this, c, r);
        return;
      case Op.SWEEP:
        r.num = this.sweep(c.nowMs, Math.max(0, Math.min(c.arg0, 1_000_000)));
        return;
      default:
        r.status = ErrorCode.UNKNOWN_OPERATION;
        return;
    }
  }

  /** The active expiry sweep: reclaims memory of keys nobody reads again. */
  sweep(nowMs: number, maxExamined: number): number {
    const changes = this.changes;
    const removed = this.store.sweepExpired(
      nowMs,
      maxExamined,
      changes === null ? undefined : (slot) => changes.expired(this.store.key(slot)),
    );
    assert(removed >= 0 && removed <= maxExamined, "sweep removes at most what it examines");
    this.expired += removed;
    return removed;
  }
}

const EMPTY = new Uint8Array(0);

/** Redis 7 EXPIRE NX|XX|GT|LT. A key without a TTL counts as an infinite TTL for GT and LT. */
function expireConditionHolds(conditions: number, currentMs: number, nextMs: number): boolean {
  if ((conditions & EXPIRE_NX) !== 0 && currentMs !== 0) return false;
  if ((conditions & EXPIRE_XX) !== 0 && currentMs === 0) return false;
  if ((conditions & EXPIRE_GT) !== 0 && (currentMs === 0 || nextMs <= currentMs)) return false;
  if ((conditions & EXPIRE_LT) !== 0 && currentMs !== 0 && nextMs >= currentMs) return false;
  return true;
}

function startsWith(key: Uint8Array, prefix: Uint8Array): boolean {
  if (key.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}

const ABSENT = { version: 0, value: null };
