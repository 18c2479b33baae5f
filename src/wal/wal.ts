/**
 * The write-ahead log of one Raft group: the durable half of Raft's
 * persistence contract (docs/raft.md, docs/wal.md). The host hands it each
 * Ready's snapshot, entries and hard state, and sends that Ready's messages
 * only once append() has resolved.
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
import { encodeEntries, encodeHardState, encodeSnapshotMark, HEADER_BYTES } from "./record.js";
import { type Recovered, recover, type SegmentInfo, segmentName } from "./recover.js";
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

interface Pending {
  bytes: Uint8Array[];
  size: number;
  /** Highest entry index in `bytes` (0: none), credited to the segment it lands in. */
  maxIndex: number;
  /** The hard state in `bytes`, if any: once written, it is what a new segment's head repeats. */
  hardState: HardState | null;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class Wal {
  private queue: Pending[] = [];
  private queuedBytes = 0;
  private flushing: Promise<void> | null = null;
  private failed: WalError | null = null;
  private closed = false;
  private hardState: HardState;
  private snapshotMeta: { index: number; term: number } | null;

  private constructor(
    private readonly dir: string,
    private readonly fs: WalFs,
    private file: WalFile,
    private readonly segments: SegmentInfo[],
    private snapshots: string[],
    recovered: Recovered,
    private readonly sync: SyncPolicy,
    private readonly maxSegmentBytes: number,
    private readonly maxRecordBytes: number,
    private readonly batchIntervalMs: number,
  ) {
    this.hardState = recovered.hardState;
    this.snapshotMeta = recovered.snapshot?.meta ?? null;
  }

  /**
   * Opens (or creates) the WAL in `dir` and recovers its state. Throws
   * WalCorruptError (src/wal/recover.ts) when the log is damaged anywhere
   * but its torn tail.
   */
  static async open(dir: string, o: WalOptions = {}): Promise<{ wal: Wal; recovered: Recovered }> {
    const fs = o.fs ?? nodeFs;
    const maxRecordBytes = o.maxRecordBytes ?? WAL_MAX_RECORD_BYTES;
    await fs.mkdir(dir);
    const { recovered, segments, snapshots } = await recover(fs, dir, maxRecordBytes);
    let file: WalFile;
    if (segments.length === 0) {
      segments.push({ seq: 1, name: segmentName(1), maxIndex: 0, bytes: 0 });
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
      recovered,
      o.sync ?? "always",
      o.maxSegmentBytes ?? WAL_SEGMENT_BYTES,
      maxRecordBytes,
      o.batchIntervalMs ?? WAL_BATCH_INTERVAL_MS,
    );
    return { wal, recovered };
  }

  /**
   * Appends entries (replacing any stored from entries[0].index on) and the
   * hard state. Resolves once durable per the sync policy; rejects with
   * WalError when the WAL has failed, is closed, or an entry is too large.
   */
  async append(entries: readonly Entry[], hardState: HardState | null = null): Promise<void> {
    const records: Uint8Array[] = [];
    let batch: Entry[] = [];
    let batchBytes = 4;
    for (const e of entries) {
      const size = 21 + e.data.length;
      if (HEADER_BYTES + 4 + size > this.maxRecordBytes)
        throw new WalError(
          "WAL_RECORD_TOO_LARGE",
          `entry ${e.index} of ${e.data.length} bytes exceeds the WAL record limit of ${this.maxRecordBytes}`,
        );
      if (batch.length > 0 && HEADER_BYTES + batchBytes + size > this.maxRecordBytes) {
        records.push(encodeEntries(batch));
        batch = [];
        batchBytes = 4;
      }
      batch.push(e);
      batchBytes += size;
    }
    if (batch.length > 0) records.push(encodeEntries(batch));
    if (hardState !== null) records.push(encodeHardState(hardState));
    if (records.length === 0) return;
    await this.enqueue(records, entries.length > 0 ? entries[entries.length - 1]!.index : 0, hardState);
  }

  /**
   * Saves a snapshot: its own file (atomically), then a record marking it in
   * the log. `replacesLog` for a snapshot received from the leader, which
   * replaces the whole log; false for the host's own compaction snapshot.
   */
  async saveSnapshot(snap: Snapshot, replacesLog: boolean): Promise<void> {
    this.check();
    const name = snapshotFileName(snap.meta.index);
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
    if (!this.snapshots.includes(name)) this.snapshots.push(name);
    this.snapshots.sort();
    await this.enqueue([encodeSnapshotMark(snap.meta.index, snap.meta.term, replacesLog)]);
    this.snapshotMeta = { index: snap.meta.index, term: snap.meta.term };
  }

  /**
   * Deletes what a saved snapshot at `index` covers: sealed segments whose
   * entries all lie at or below it, and all but the two newest snapshots.
   */
  async compact(index: number): Promise<void> {
    this.check();
    assert(this.snapshotMeta !== null && index <= this.snapshotMeta.index, "compaction is covered by a saved snapshot");
    let removed = false;
    while (this.segments.length > 1 && this.segments[0]!.maxIndex <= index) {
      const seg = this.segments.shift()!;
      await this.fs.remove(`${this.dir}/${seg.name}`);
      removed = true;
    }
    while (this.snapshots.length > 2) {
      await this.fs.remove(`${this.dir}/${this.snapshots.shift()!}`);
      removed = true;
    }
    if (removed) await this.fs.syncDir(this.dir);
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

  private async enqueue(bytes: Uint8Array[], maxIndex = 0, hardState: HardState | null = null): Promise<void> {
    this.check();
    // Backpressure: a host producing faster than the disk waits here.
    while (this.queuedBytes > WAL_MAX_QUEUED_BYTES && this.flushing !== null) await this.flushing;
    this.check();
    let size = 0;
    for (const b of bytes) size += b.length;
    const done = new Promise<void>((resolve, reject) =>
      this.queue.push({ bytes, size, maxIndex, hardState, resolve, reject }),
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
        if (this.sync !== "off") await this.file.sync();
      } catch (err) {
        this.fail(err, batch);
        return;
      }
      this.queuedBytes -= size;
      const seg = this.segments[this.segments.length - 1]!;
      seg.bytes += size;
      for (const p of batch) {
        seg.maxIndex = Math.max(seg.maxIndex, p.maxIndex);
        if (p.hardState !== null) this.hardState = p.hardState;
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
   * with the current hard state and snapshot mark, so once older segments
   * are deleted the newest ones still say everything needed to recover.
   */
  private async rotate(): Promise<void> {
    await this.file.sync();
    await this.file.close();
    const seq = this.segments[this.segments.length - 1]!.seq + 1;
    const name = segmentName(seq);
    this.file = await this.fs.open(`${this.dir}/${name}`);
    const head: Uint8Array[] = [encodeHardState(this.hardState)];
    if (this.snapshotMeta !== null)
      head.push(encodeSnapshotMark(this.snapshotMeta.index, this.snapshotMeta.term, false));
    let bytes = 0;
    for (const h of head) {
      await this.file.write(h);
      bytes += h.length;
    }
    await this.file.sync();
    await this.fs.syncDir(this.dir);
    this.segments.push({ seq, name, maxIndex: 0, bytes });
  }
}
