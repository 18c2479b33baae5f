/**
 * The state machine of a worker's partitions: one ShardCore (the same pure
 * executor a single node uses, src/shard/execute.ts) per partition, fed
 * committed log entries that are shard commands (src/shard/command.ts).
 *
 * Determinism across replicas is the whole job:
 *   - A command carries the time it was accepted (`nowMs`, stamped by the
 *     leader), and every expiry decision uses it, never a replica's clock.
 *   - The log's clock never goes back: a new leader whose clock is behind
 *     the old one's would otherwise stamp an earlier time and bring expired
 *     keys back to life. Each partition keeps the highest `nowMs` applied,
 *     and a command stamped earlier executes at that time instead. Every
 *     replica applies the same sequence, so every replica makes the same
 *     correction.
 *   - Reads served outside the log (by the leader after ReadIndex) run
 *     read-only: an expired key is reported absent but not removed, so the
 *     leader's map stays identical to its followers'. Keys are actually
 *     removed by commands in the log (and, later, by a sweep command the
 *     leader proposes).
 *
 * Snapshots serialise a partition's whole map (every entry, with versions
 * and expiry times), its version counter and its clock.
 */
import { ErrorCode } from "../errors.js";
import type { Entry, Snapshot } from "../raft/types.js";
import { BACKUP_MAX_PARTITION_BYTES, CLUSTER_WATCH_HISTORY_BYTES } from "../limits.js";
import { CommandView, isWriteCommand, Op, readF64, Result, writeF64 } from "../shard/command.js";
import { History } from "../shard/history.js";
import { answerWatchNow } from "../shard/watch-reads.js";
import { ShardCore } from "../shard/execute.js";
import { readKeys } from "../journal/key-chunks.js";
import type { StateMachine } from "./multi-raft.js";

interface Partition {
  core: ShardCore;
  /**
   * The partition's changes for watchers (docs/watch.md, "In a cluster"):
   * the changes of log entry i are numbered from i * 65536 + 1, so a
   * position is a log position, the same on every replica, and a watcher
   * can resume on any member that has applied that far.
   */
  history: History;
  /** The log's clock: the highest nowMs applied. */
  clockMs: number;
  /** A command has ever set an expiry here (so an expiry sweep may find work). */
  ttlSeen: boolean;
}

const MAGIC = 0x4d535050; // "PPSM"

/** Change numbers per log entry: a transaction has at most TXN_MAX_OPS changes, a flush one. */
const CHANGES_PER_ENTRY = 65536;

export class PartitionMachine implements StateMachine {
  private readonly parts = new Map<number, Partition>();
  private readonly view = new CommandView();
  private readonly result = new Result();

  private part(group: number): Partition {
    let p = this.parts.get(group);
    if (p === undefined) {
      p = { core: new ShardCore(), history: new History(CLUSTER_WATCH_HISTORY_BYTES), clockMs: 0, ttlSeen: false };
      p.core.changes = p.history;
      this.parts.set(group, p);
    }
    return p;
  }

  /** Whether any key of the partition was ever given an expiry (an expiry sweep may have work). */
  ttlSeen(group: number): boolean {
    return this.parts.get(group)?.ttlSeen ?? false;
  }

  /** The ShardCore of a partition (for stats and tests). */
  core(group: number): ShardCore {
    return this.part(group).core;
  }

  apply(group: number, entry: Entry): Uint8Array {
    const p = this.part(group);
    const r = this.result.reset(0);
    if (!this.view.wrap(entry.data)) {
      // In the log, so every replica answers the same: the command is refused.
      r.status = ErrorCode.INVALID_ARGUMENT;
      return encode(r);
    }
    const c = this.view;
    r.tag = c.tag;
    if (c.nowMs < p.clockMs) c.nowMs = p.clockMs;
    p.clockMs = c.nowMs;
    if (c.expireAtMs > 0) p.ttlSeen = true;
    p.history.skipTo(entry.index * CHANGES_PER_ENTRY);
    p.core.execute(c, r);
    return encode(r);
  }

  /**
   * Serves a read outside the log, at the local time `nowMs` (never earlier
   * than the log's clock), without changing the map. Writes are refused:
   * they must go through the log.
   */
  read(group: number, command: Uint8Array, nowMs: number): Uint8Array {
    const p = this.part(group);
    const r = this.result.reset(0);
    if (!this.view.wrap(command) || isWriteCommand(this.view.op, this.view.flags)) {
      r.status = ErrorCode.INVALID_ARGUMENT;
      return encode(r);
    }
    const c = this.view;
    r.tag = c.tag;
    if (c.op === Op.WATCH) {
      // From this replica's history: any replica serves a watch (positions are log positions).
      answerWatchNow(p.history, c, r);
      return encode(r);
    }
    if (c.op === Op.DUMP) {
      // A backup's read of the whole partition (src/io/backup.ts): the leader serves it after ReadIndex,
      // so it is the partition at one linearizable point. Read whole, as a Raft snapshot is.
      if (p.core.store.memoryBytes() > BACKUP_MAX_PARTITION_BYTES) {
        r.status = ErrorCode.VALUE_TOO_LARGE;
        return encode(r);
      }
      r.value = this.snapshot(group);
      r.num = p.clockMs;
      r.version = p.core.lastVersion;
      return encode(r);
    }
    c.nowMs = Math.max(nowMs, p.clockMs);
    p.core.readOnly = true;
    try {
      p.core.execute(c, r);
    } finally {
      p.core.readOnly = false;
    }
    return encode(r);
  }

  snapshot(group: number): Uint8Array {
    const p = this.part(group);
    const store = p.core.store;
    const slots: number[] = [];
    let cursor = 0;
    do cursor = store.scan(cursor, 1 << 20, (slot) => slots.push(slot));
    while (cursor !== 0);
    let size = 4 + 8 + 8 + 4;
    for (const s of slots) size += 24 + store.key(s).length + store.value(s).length;
    const out = new Uint8Array(size);
    const v = new DataView(out.buffer);
    v.setUint32(0, MAGIC, true);
    writeF64(out, 4, p.core.lastVersion);
    writeF64(out, 12, p.clockMs);
    v.setUint32(20, slots.length, true);
    let at = 24;
    for (const s of slots) {
      const k = store.key(s);
      const val = store.value(s);
      v.setUint32(at, k.length, true);
      v.setUint32(at + 4, val.length, true);
      writeF64(out, at + 8, store.version(s));
      writeF64(out, at + 16, store.expiresAtMs(s));
      out.set(k, at + 24);
      out.set(val, at + 24 + k.length);
      at += 24 + k.length + val.length;
    }
    return out;
  }

  restore(group: number, snapshot: Snapshot): void {
    const b = snapshot.data;
    const core = new ShardCore();
    let clockMs = 0;
    let ttlSeen = false;
    if (b.length > 0) {
      const loaded = loadPartitionSnapshot(b, core);
      if (typeof loaded === "string") throw new Error(`partition ${group}: ${loaded}`);
      ({ clockMs, ttlSeen } = loaded);
    }
    // The changes before the snapshot are not known here: a watcher resuming from before it is COMPACTED.
    const history = new History(CLUSTER_WATCH_HISTORY_BYTES);
    history.resetAt(snapshot.meta.index * CHANGES_PER_ENTRY);
    core.changes = history;
    this.parts.set(group, { core, history, clockMs, ttlSeen });
  }
}

/** Keys in a partition's snapshot (snapshot()'s layout), or 0 when it is not one. */
export function partitionSnapshotKeys(b: Uint8Array): number {
  if (b.length < 24) return 0;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return v.getUint32(0, true) === MAGIC ? v.getUint32(20, true) : 0;
}

/**
 * Loads a partition's snapshot (snapshot()'s layout: magic, f64 last version,
 * f64 clock, u32 count, then keys as SNAP_KEYS lays them out) into `core`:
 * a follower installing it, and `piccolo restore` reading a cluster's
 * backup. Returns the log's clock and whether any key has an expiry, or
 * what is wrong with the bytes.
 */
export function loadPartitionSnapshot(b: Uint8Array, core: ShardCore): { clockMs: number; ttlSeen: boolean } | string {
  if (b.length < 24 || new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, true) !== MAGIC)
    return "not a partition snapshot";
  const last = readF64(b, 4);
  if (last > core.lastVersion) core.lastVersion = last;
  let ttlSeen = false;
  const bad = readKeys(b, 24, b.length, partitionSnapshotKeys(b), (key, value, version, expiresAtMs) => {
    if (expiresAtMs !== 0) ttlSeen = true;
    core.store.set(key, value, version, expiresAtMs);
    if (version > core.lastVersion) core.lastVersion = version;
  });
  return bad ?? { clockMs: readF64(b, 12), ttlSeen };
}

function encode(r: Result): Uint8Array {
  const out = new Uint8Array(r.byteLength());
  r.encode(out, 0);
  return out;
}
