/**
 * The write-ahead log of a shard worker's Raft groups: the durable half of
 * Raft's persistence contract (docs/raft.md, docs/wal.md). The host hands it
 * each round's snapshots, entries and hard states, and sends that round's
 * messages only once the write has resolved. One log serves every group on
 * the worker, records tagged by group, so one fsync covers them all
 * (decision 0182); persist() takes a whole round of groups at once. The
 * single-group methods (append, saveSnapshot, compact without a group) use
 * group 0.
 *
 * Writes are serialised through one flush loop, so records reach the file in
 * the order append() was called, and several appends waiting together share
 * one write and one fsync (group commit). The sync policy decides when a
 * write counts as done:
 *   always  fsync before resolving; whatever queued meanwhile shares it.
 *   batch   as always, but wait up to WAL_BATCH_INTERVAL_MS first to gather
 *           more appends per fsync (throughput for latency).
 *   off     resolve after write(); the OS flushes when it likes. A power
 *           cut loses acknowledged writes. For a node that is not
 *           replicated and accepts that, never for Raft.
 *
 * A failed write or fsync puts the WAL in a failed state that refuses every
 * later append: after a failed fsync the kernel may have dropped the dirty
 * pages and marked them clean, so retrying the fsync can "succeed" with the
 * data gone (PostgreSQL's fsyncgate, 2018). The only safe continuation is
 * to restart and recover from what is really on disk.
 */
import { assert } from "../assert.js";
import { WAL_BATCH_INTERVAL_MS, WAL_MAX_QUEUED_BYTES, WAL_MAX_RECORD_BYTES, WAL_SEGMENT_BYTES } from "../limits.js";
import type { Entry, HardState, Snapshot } from "../raft/types.js";
import { nodeFs, type WalFile, type WalFs } from "./fs.js";
import {
  ENTRIES_HEAD_BYTES,
  encodeEntries,
  encodeHardState,
  encodeSnapshotMark,
  entryBytes,
  HEADER_BYTES,
} from "./record.js";
import {
  EMPTY_HARD_STATE,
  type GroupRecovered,
  type Recovered,
  recover,
  type SegmentInfo,
  segmentName,
} from "./recover.js";
import { encodeSnapshot, snapshotFileName } from "./snapshot-file.js";

export type SyncPolicy = "always" | "batch" | "off";

export interface WalOptions {
  sync?: SyncPolicy;
  maxSegmentBytes?: number;
  maxRecordBytes?: number;
  batchIntervalMs?: number;
  fs?: WalFs;
}

export class WalError extends Error {
  override name = "WalError";
  constructor(
    readonly code: "WAL_FAILED" | "WAL_RECORD_TOO_LARGE" | "WAL_CLOSED",
    message: string,
    readonly cause?: unknown,
  ) {
    super(message);
  }
}

/** One group's part of a round (the shape src/cluster/multi-raft.ts persists). */
export interface GroupWrite {
  group: number;
  snapshot: Snapshot | null;
  hardState: HardState | null;
  entries: readonly Entry[];
}

interface Pending {
  bytes: Uint8Array[];
  size: number;
  /** Highest entry index per group in `bytes`, credited to the segment it lands in. */
  maxIndex: Map<number, number>;
  /** The hard states in `bytes`: once written, what a new segment's head repeats. */
  hardStates: Map<number, HardState>;
  /** Whether this write must be fsynced before it resolves (see persist()). */
  sync: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class Wal {
  private queue: Pending[] = [];
  private queuedBytes = 0;
  private flushing: Promise<void> | null = null;
  private failed: WalError | null = null;
  private closed = false;
  private readonly hardStates = new Map<number, HardState>();
  private readonly snapshotMetas = new Map<number, { index: number; term: number }>();

  private constructor(
    private readonly dir: string,
    private readonly fs: WalFs,
    private file: WalFile,
    private readonly segments: SegmentInfo[],
    private readonly snapshots: Map<number, string[]>,
    groups: Map<number, GroupRecovered>,
    private readonly sync: SyncPolicy,
    private readonly maxSegmentBytes: number,
    private readonly maxRecordBytes: number,
    private readonly batchIntervalMs: number,
  ) {
    for (const [g, r] of groups) {
      this.hardStates.set(g, r.hardState);
      if (r.snapshot !== null) this.snapshotMetas.set(g, { index: r.snapshot.meta.index, term: r.snapshot.meta.term });
    }
  }

  /**
   * Opens (or creates) the WAL in `dir` and recovers its state: `groups` for
   * every group it holds, `recovered` for group 0 (the single-group view) with
   * the log-wide torn-tail report. Throws WalCorruptError
   * (src/wal/recover.ts) when the log is damaged anywhere but its torn tail.
   */
  static async open(
    dir: string,
    o: WalOptions = {},
  ): Promise<{ wal: Wal; recovered: Recovered; groups: Map<number, GroupRecovered> }> {
    const fs = o.fs ?? nodeFs;
    const maxRecordBytes = o.maxRecordBytes ?? WAL_MAX_RECORD_BYTES;
    await fs.mkdir(dir);
    const { groups, truncatedTail, segments, snapshots } = await recover(fs, dir, maxRecordBytes);
    let file: WalFile;
    if (segments.length === 0) {
      segments.push({ seq: 1, name: segmentName(1), maxIndex: new Map(), bytes: 0 });
      file = await fs.open(`${dir}/${segmentName(1)}`);
      await fs.syncDir(dir);
    } else {
      file = await fs.open(`${dir}/${segments[segments.length - 1]!.name}`);
    }
    const wal = new Wal(
      dir,
      fs,
      file,
      segments,
      snapshots,
      groups,
      o.sync ?? "always",
      o.maxSegmentBytes ?? WAL_SEGMENT_BYTES,
      maxRecordBytes,
      o.batchIntervalMs ?? WAL_BATCH_INTERVAL_MS,
    );
    const g0 = groups.get(0) ?? { hardState: EMPTY_HARD_STATE, snapshot: null, entries: [] };
    return { wal, recovered: { ...g0, truncatedTail }, groups };
  }

  /**
   * Appends group 0's entries (replacing any stored from entries[0].index
   * on) and hard state. Resolves once durable per the sync policy; rejects
   * with WalError when the WAL has failed, is closed, or an entry is too large.
   */
  append(entries: readonly Entry[], hardState: HardState | null = null): Promise<void> {
    return this.persist([{ group: 0, snapshot: null, hardState, entries }]);
  }

  /**
   * Persists one round of several groups: each group's snapshot first (its
   * own file, then its mark), then every group's entries and hard state in
   * one write and one fsync. A snapshot here came from a leader
   * (InstallSnapshot), so it replaces that group's log.
   */
  async persist(round: readonly GroupWrite[], mustSync = true): Promise<void> {
    this.check();
    for (const w of round) if (w.snapshot !== null) await this.saveSnapshot(w.snapshot, true, w.group);
    const records: Uint8Array[] = [];
    const maxIndex = new Map<number, number>();
    const hardStates = new Map<number, HardState>();
    for (const w of round) {
      this.encodeEntries(w.group, w.entries, records);
      if (w.entries.length > 0) maxIndex.set(w.group, w.entries[w.entries.length - 1]!.index);
      if (w.hardState !== null) {
        records.push(encodeHardState(w.group, w.hardState));
        hardStates.set(w.group, w.hardState);
      }
    }
    if (records.length === 0) return;
    await this.enqueue(records, maxIndex, hardStates, mustSync);
  }

  /** Encodes a group's entries into records under the size limit; throws before anything is queued. */
  private encodeEntries(group: number, entries: readonly Entry[], out: Uint8Array[]): void {
    let batch: Entry[] = [];
    let batchBytes = ENTRIES_HEAD_BYTES;
    for (const e of entries) {
      const size = entryBytes(e);
      if (HEADER_BYTES + ENTRIES_HEAD_BYTES + size > this.maxRecordBytes)
        throw new WalError(
          "WAL_RECORD_TOO_LARGE",
          `entry ${e.index} of ${e.data.length} bytes exceeds the WAL record limit of ${this.maxRecordBytes}`,
        );
      if (batch.length > 0 && HEADER_BYTES + batchBytes + size > this.maxRecordBytes) {
        out.push(encodeEntries(group, batch));
        batch = [];
        batchBytes = ENTRIES_HEAD_BYTES;
      }
      batch.push(e);
      batchBytes += size;
    }
    if (batch.length > 0) out.push(encodeEntries(group, batch));
  }

  /**
   * Saves a snapshot: its own file (atomically), then a record marking it in
   * the log. `replacesLog` for a snapshot received from the leader, which
   * replaces the whole log; false for the host's own compaction snapshot.
   */
  async saveSnapshot(snap: Snapshot, replacesLog: boolean, group = 0): Promise<void> {
    this.check();
    const name = snapshotFileName(group, snap.meta.index);
    const tmp = `${this.dir}/${name}.tmp`;
    await this.fs.remove(tmp);
    const f = await this.fs.open(tmp);
    try {
      await f.write(encodeSnapshot(snap));
      await f.sync();
    } finally {
      await f.close();
    }
    await this.fs.rename(tmp, `${this.dir}/${name}`);
    await this.fs.syncDir(this.dir);
    const files = this.snapshots.get(group) ?? [];
    if (!files.includes(name)) files.push(name);
    files.sort();
    this.snapshots.set(group, files);
    await this.enqueue([encodeSnapshotMark(group, snap.meta.index, snap.meta.term, replacesLog)]);
    this.snapshotMetas.set(group, { index: snap.meta.index, term: snap.meta.term });
  }

  /**
   * Deletes what saved snapshots cover, once `group` has a snapshot at
   * `index`: sealed segments in which every group's entries lie at or below
   * that group's snapshot, and all but the two newest snapshots of `group`.
   */
  async compact(index: number, group = 0): Promise<void> {
    this.check();
    const meta = this.snapshotMetas.get(group);
    assert(meta !== undefined && index <= meta.index, "compaction is covered by a saved snapshot");
    const covered = (seg: SegmentInfo) =>
      [...seg.maxIndex].every(([g, max]) => max <= (this.snapshotMetas.get(g)?.index ?? 0));
    let removed = false;
    while (this.segments.length > 1 && covered(this.segments[0]!)) {
      const seg = this.segments.shift()!;
      await this.fs.remove(`${this.dir}/${seg.name}`);
      removed = true;
    }
    const files = this.snapshots.get(group) ?? [];
    while (files.length > 2) {
      await this.fs.remove(`${this.dir}/${files.shift()!}`);
      removed = true;
    }
    if (removed) await this.fs.syncDir(this.dir);
  }

  /** A group's own compaction snapshot: saved (not replacing the log), then what it covers deleted. */
  async saveCompaction(group: number, snapshot: Snapshot): Promise<void> {
    await this.saveSnapshot(snapshot, false, group);
    await this.compact(snapshot.meta.index, group);
  }

  /** Segment file names, oldest first (for tests and stats). */
  segmentNames(): string[] {
    return this.segments.map((s) => s.name);
  }

  /** Waits for queued appends, then closes the file. Later calls fail with WAL_CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    while (this.flushing !== null) await this.flushing;
    this.closed = true;
    await this.file.close();
  }

  private check(): void {
    if (this.failed !== null) throw this.failed;
    if (this.closed) throw new WalError("WAL_CLOSED", "the WAL is closed");
  }

  private async enqueue(
    bytes: Uint8Array[],
    maxIndex = new Map<number, number>(),
    hardStates = new Map<number, HardState>(),
    sync = true,
  ): Promise<void> {
    this.check();
    // Backpressure: a host producing faster than the disk waits here.
    while (this.queuedBytes > WAL_MAX_QUEUED_BYTES && this.flushing !== null) await this.flushing;
    this.check();
    let size = 0;
    for (const b of bytes) size += b.length;
    const done = new Promise<void>((resolve, reject) =>
      this.queue.push({ bytes, size, maxIndex, hardStates, sync, resolve, reject }),
    );
    this.queuedBytes += size;
    if (this.flushing === null) this.flushing = this.flushLoop().finally(() => (this.flushing = null));
    return done;
  }

  private async flushLoop(): Promise<void> {
    while (this.queue.length > 0) {
      if (this.sync === "batch") await new Promise((r) => setTimeout(r, this.batchIntervalMs));
      const batch = this.queue;
      this.queue = [];
      let size = 0;
      for (const p of batch) size += p.size;
      const buf = new Uint8Array(size);
      let at = 0;
      for (const p of batch)
        for (const b of p.bytes) {
          buf.set(b, at);
          at += b.length;
        }
      try {
        await this.file.write(buf);
        if (this.sync !== "off" && batch.some((p) => p.sync)) await this.file.sync();
      } catch (err) {
        this.fail(err, batch);
        return;
      }
      this.queuedBytes -= size;
      const seg = this.segments[this.segments.length - 1]!;
      seg.bytes += size;
      for (const p of batch) {
        for (const [g, max] of p.maxIndex) seg.maxIndex.set(g, Math.max(seg.maxIndex.get(g) ?? 0, max));
        for (const [g, hs] of p.hardStates) this.hardStates.set(g, hs);
        p.resolve();
      }
      if (seg.bytes >= this.maxSegmentBytes) {
        try {
          await this.rotate();
        } catch (err) {
          this.fail(err, []);
          return;
        }
      }
    }
  }

  private fail(err: unknown, batch: Pending[]): void {
    const code = (err as { code?: string }).code ?? "EIO";
    this.failed = new WalError(
      "WAL_FAILED",
      `WAL write failed (${code}): ${(err as Error).message}; the WAL refuses further writes, restart to recover`,
      err,
    );
    for (const p of [...batch, ...this.queue]) p.reject(this.failed);
    this.queue = [];
    this.queuedBytes = 0;
  }

  /**
   * Seals the current segment and starts the next. The new segment begins
   * with every group's current hard state and snapshot mark, so once older
   * segments are deleted the newest ones still say everything needed to
   * recover.
   */
  private async rotate(): Promise<void> {
    await this.file.sync();
    await this.file.close();
    const seq = this.segments[this.segments.length - 1]!.seq + 1;
    const name = segmentName(seq);
    this.file = await this.fs.open(`${this.dir}/${name}`);
    const head: Uint8Array[] = [];
    for (const [g, hs] of this.hardStates) head.push(encodeHardState(g, hs));
    for (const [g, m] of this.snapshotMetas) head.push(encodeSnapshotMark(g, m.index, m.term, false));
    let bytes = 0;
    for (const h of head) {
      await this.file.write(h);
      bytes += h.length;
    }
    await this.file.sync();
    await this.fs.syncDir(this.dir);
    this.segments.push({ seq, name, maxIndex: new Map(), bytes });
  }
}
