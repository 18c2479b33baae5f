/**
 * `piccolo restore FILE --data-dir DIR`: a backup file (format.ts) made
 * into a single node's data directory, which `piccolo server --data-dir DIR`
 * then starts from (docs/backup.md).
 *
 * 1. The file is read once, whole, checking every record and its SHA-256.
 *    Each section is replayed into a map of its own as it is read: a
 *    shard's records in order (keys walked, effects, transaction parts: the
 *    same rules as the journal's recovery), a partition's map as it is.
 * 2. Only once the checksum at the end holds are the keys placed in the
 *    target layout (`shards` maps by the same hash the node routes by, so
 *    a backup restores into any shard count, and a cluster's backup into
 *    a single node), and written as each shard's snapshot (the journal's
 *    own snapshot format, src/journal/snapshot.ts) beside an empty log
 *    segment, under a temporary name that is renamed to DIR at the end: an
 *    interrupted restore leaves no directory a node would start from.
 *
 * Kept: every key's value, version and absolute expiry. Every shard's
 * version counter starts above the highest version in the backup, so a
 * version is never handed out twice. Keys whose TTL ran out before the
 * restore are left out (counted).
 *
 * Memory: the restore holds every key once (in the target maps) plus one
 * section being replayed; about what the node itself will hold.
 */
import type { PiccoloClient } from "../client/client.js";
import { existsSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { applyEffects, JournalRecord, readPartPrefix } from "../journal/effects.js";
import { DATA_FORMAT } from "../journal/data-dir.js";
import { readKeys } from "../journal/key-chunks.js";
import { realFs } from "../journal/files.js";
import { segmentName } from "../journal/recover.js";
import { SnapshotWriter } from "../journal/snapshot.js";
import { loadPartitionSnapshot } from "../cluster/partition-machine.js";
import { initHash } from "../hash.js";
import { shardOf } from "../io/route.js";
import { readF64 } from "../shard/command.js";
import { ShardCore } from "../shard/execute.js";
import { BackupFileError, BackupRecord, type BackupSummary, readBackupFile } from "./format.js";

export interface RestoreReport {
  summary: BackupSummary;
  keys: number;
  /** Keys whose TTL had run out by the restore: not written. */
  expired: number;
  shards: number;
  maxVersion: number;
  ms: number;
}

/** Reads the whole file, checking it; the keys, by section, are replayed into maps. */
export function loadBackup(path: string): { summary: BackupSummary; sections: ShardCore[]; maxVersion: number } {
  const sections: ShardCore[] = [];
  let core: ShardCore | null = null;
  /** A transaction part waiting for the next record: applied unless that is its TXN_ABORT. */
  let part: { id: number; effects: Uint8Array } | null = null;
  let maxVersion = 0;
  const settlePart = (abortId: number | null): void => {
    if (part === null) return;
    if (abortId !== part.id) applyOrThrow(core!, part.effects, 0, part.effects.length, -1);
    part = null;
  };
  const summary = readBackupFile(path, {
    section() {
      core = new ShardCore();
      sections.push(core);
    },
    data(type, payload, offset) {
      const c = core!;
      if (type === JournalRecord.TXN_ABORT) {
        settlePart(readF64(payload, 0));
        return;
      }
      settlePart(null);
      if (type === JournalRecord.SNAP_KEYS) loadKeys(c, payload, 4, payload.length, readU32(payload, 0), offset);
      else if (type === JournalRecord.EFFECTS) applyOrThrow(c, payload, 0, payload.length, offset);
      else if (type === JournalRecord.TXN_PART) {
        const prefix = readPartPrefix(payload, 0, payload.length)!;
        part = { id: prefix.id, effects: payload.slice(prefix.effects) };
      } else if (type === BackupRecord.PARTITION) loadPartition(c, payload, offset);
    },
    partEnd(_section, end) {
      settlePart(null);
      const c = core!;
      if (end.lastVersion > c.lastVersion) c.lastVersion = end.lastVersion;
      if (c.lastVersion > maxVersion) maxVersion = c.lastVersion;
      core = null;
    },
  });
  return { summary, sections, maxVersion };
}

function readU32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

function applyOrThrow(core: ShardCore, b: Uint8Array, start: number, end: number, offset: number): void {
  if (!applyEffects(core, b, start, end)) throw new BackupFileError(offset, "a record of writes does not parse");
}

/** Keys in the layout of a snapshot's SNAP_KEYS. */
function loadKeys(core: ShardCore, b: Uint8Array, start: number, end: number, count: number, offset: number): void {
  const bad = readKeys(b, start, end, count, (key, value, version, expiresAtMs) => {
    core.store.set(key, value, version, expiresAtMs);
    if (version > core.lastVersion) core.lastVersion = version;
  });
  if (bad !== null) throw new BackupFileError(offset, bad);
}

/** A partition's map, as its Raft snapshot lays it out (src/cluster/partition-machine.ts). */
function loadPartition(core: ShardCore, b: Uint8Array, offset: number): void {
  const loaded = loadPartitionSnapshot(b, core);
  if (typeof loaded === "string") throw new BackupFileError(offset, loaded);
}

/**
 * Restores the backup at `file` into a new data directory `dir` laid out
 * for `shards` shard workers (the node's --shards; 0 is one shard on disk).
 * Refuses a directory that exists and is not empty.
 */
export async function restoreBackup(
  file: string,
  dir: string,
  shards: number,
  nowMs = Date.now(),
): Promise<RestoreReport> {
  const t0 = performance.now();
  await initHash(); // keys are placed by the hash the node routes by
  if (existsSync(dir) && readdirSync(dir).length > 0)
    throw new RestoreRefused(
      `${dir} exists and is not empty: a restore writes a new data directory (move it aside, or name another)`,
    );
  const { summary, sections, maxVersion } = loadBackup(file);
  const layout = Math.max(1, shards);
  const targets = Array.from({ length: layout }, () => new ShardCore());
  let keys = 0;
  let expired = 0;
  for (let i = 0; i < sections.length; i++) {
    const store = sections[i]!.store;
    let cursor = 0;
    do
      cursor = store.scan(cursor, 65536, (slot) => {
        const expiresAt = store.expiresAtMs(slot);
        if (expiresAt !== 0 && expiresAt <= nowMs) {
          expired++;
          return;
        }
        const key = store.key(slot);
        targets[shardOf(key, layout)]!.store.set(key, store.value(slot), store.version(slot), expiresAt);
        keys++;
      });
    while (cursor !== 0);
    sections[i] = new ShardCore(); // this section's map can go now
  }
  const tmp = `${dir}.restoring`;
  rmSync(tmp, { recursive: true, force: true });
  realFs.mkdir(tmp);
  try {
    for (let s = 0; s < layout; s++) {
      const core = targets[s]!;
      core.lastVersion = maxVersion; // no version from the backup is handed out again, on any shard
      const shardDir = `${tmp}/shard-${s}`;
      realFs.mkdir(shardDir);
      // The snapshot names segment 1 as the first to replay after it: recovery requires it to exist.
      const seg = realFs.open(`${shardDir}/${segmentName(1)}`);
      seg.sync();
      seg.close();
      const w = new SnapshotWriter(realFs, shardDir, 1, core, nowMs, 0);
      while (!w.step(1 << 20));
      w.finish(nowMs);
      targets[s] = new ShardCore();
    }
    writeFileSync(`${tmp}/piccolo.json`, `${JSON.stringify({ format: DATA_FORMAT, shards: layout })}\n`);
    const m = realFs.open(`${tmp}/piccolo.json`);
    m.sync();
    m.close();
    realFs.syncDir(tmp);
    if (existsSync(dir)) rmSync(dir, { recursive: true }); // empty (checked above)
    renameSync(tmp, dir);
    realFs.syncDir(dirname(dir));
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return { summary, keys, expired, shards: layout, maxVersion, ms: performance.now() - t0 };
}

/** Entries per restoreKeys request, and requests in flight, when restoring through a running node. */
const RESTORE_BATCH_KEYS = 1000;
const RESTORE_IN_FLIGHT = 8;

/**
 * `piccolo restore FILE --server HOST:PORT`: the backup's keys written into
 * a running node or cluster (any member) with their versions and expiry
 * (restoreKeys, admin only). The file is checked whole first. Refuses a
 * target that holds keys unless `force` (the backup's keys then overwrite
 * theirs, and the others stay). Each key is restored on its own, as mput
 * writes: a restore cut short leaves some keys restored; run it again.
 */
export async function restoreToServer(
  file: string,
  client: PiccoloClient,
  force: boolean,
  nowMs = Date.now(),
): Promise<Omit<RestoreReport, "shards">> {
  const t0 = performance.now();
  if (!force) {
    let cursor = 0;
    do {
      const page = await client.scan({ cursor, count: 100 });
      if (page.keys.length > 0)
        throw new RestoreRefused(
          "the target already holds keys: restore into an empty node or cluster, or give --force to write the backup's keys over it",
        );
      cursor = page.cursor;
    } while (cursor !== 0);
  }
  const { summary, sections, maxVersion } = loadBackup(file);
  let keys = 0;
  let expired = 0;
  const inFlight = new Set<Promise<void>>();
  let failure: unknown = null;
  let batch: { key: Uint8Array; value: Uint8Array; version: number; expireAtMs: number }[] = [];
  const send = async (): Promise<void> => {
    const entries = batch;
    batch = [];
    const p = client.restoreKeys(entries).then(
      () => {
        keys += entries.length;
      },
      (err: unknown) => {
        failure ??= err;
      },
    );
    const tracked = p.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
    if (inFlight.size >= RESTORE_IN_FLIGHT) await Promise.race(inFlight);
  };
  for (let i = 0; i < sections.length && failure === null; i++) {
    const store = sections[i]!.store;
    const slots: number[] = [];
    let cursor = 0;
    do cursor = store.scan(cursor, 65536, (slot) => slots.push(slot));
    while (cursor !== 0);
    for (const slot of slots) {
      const expireAtMs = store.expiresAtMs(slot);
      if (expireAtMs !== 0 && expireAtMs <= nowMs) {
        expired++;
        continue;
      }
      batch.push({
        key: store.key(slot).slice(),
        value: store.value(slot).slice(),
        version: store.version(slot),
        expireAtMs,
      });
      if (batch.length === RESTORE_BATCH_KEYS) await send();
      if (failure !== null) break;
    }
    sections[i] = new ShardCore();
  }
  if (batch.length > 0 && failure === null) await send();
  await Promise.all(inFlight);
  if (failure !== null) throw failure;
  return { summary, keys, expired, maxVersion, ms: performance.now() - t0 };
}

/** The target of a restore cannot take it as it is (not empty). */
export class RestoreRefused extends Error {
  override name = "RestoreRefused";
}
