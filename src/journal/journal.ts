/**
 * One shard's journal: the log of what its writes did, its snapshots, and
 * the promise each fsync policy makes. Owned by one thread (a shard worker,
 * or the IO thread with --shards 0): no locks, no sharing (decision 0221).
 *
 * The host's one rule: call commit() before any answer leaves the thread.
 *   always    commit() writes the batch's effects and fdatasyncs them: an
 *             answer means the write is on disk. Every command of the batch,
 *             from every connection, shares the one fsync (group commit).
 *   everysec  commit() writes them (the OS has them: a killed process loses
 *             nothing acknowledged); tick() fdatasyncs at most
 *             EVERYSEC_INTERVAL_MS later (a power cut loses at most ~1 s).
 *   no        commit() writes them; the OS flushes when it likes.
 *
 * When a write or fsync fails (a full disk, EIO) the journal fails: commit()
 * returns false, and the host must answer every command since the last good
 * commit with STORAGE_FAILED and take the map back from disk (reload()),
 * because those commands changed the map in memory but not on disk. A
 * failed fsync is never retried on the same file (after a failed fsync
 * Linux may have dropped the dirty pages: "fsyncgate", docs/wal.md); every
 * JOURNAL_RETRY_MS the journal tries a fresh segment, and writes resume when
 * a write and fsync there succeed.
 */
import {
  EVERYSEC_INTERVAL_MS,
  JOURNAL_RETRY_MS,
  JOURNAL_WRITE_CHUNK_BYTES,
  SNAPSHOT_MAX_RESTARTS,
  SNAPSHOT_STEP_KEYS,
  WAL_SEGMENT_BYTES,
} from "../limits.js";
import { writeF64 } from "../shard/command.js";
import type { ShardCore } from "../shard/execute.js";
import { HEADER_BYTES, sealFrame } from "../wal/record.js";
import { EffectBuffer, JournalRecord } from "./effects.js";
import type { JournalFile, JournalFs } from "./files.js";
import { type InDoubtPart, recoverShard, type ShardRecovery, segmentName } from "./recover.js";
import { SnapshotWriter, snapshotName } from "./snapshot.js";

export type FsyncPolicy = "always" | "everysec" | "no";
export const FSYNC_POLICIES: readonly FsyncPolicy[] = ["always", "everysec", "no"];

export interface JournalOptions {
  /** This shard's directory (data-dir/shard-N). */
  dir: string;
  fsync: FsyncPolicy;
  /** A snapshot starts once the log holds this many bytes (and as many as the last snapshot). */
  snapshotLogBytes: number;
  fs: JournalFs;
  log: (level: "info" | "warn" | "error", message: string, detail?: object) => void;
  /** Keys a snapshot walks per tick (default SNAPSHOT_STEP_KEYS; tests make it tiny to interleave). */
  snapshotStepKeys?: number;
  /** How long after a failure writes are tried again (JOURNAL_RETRY_MS; tests shorten it). */
  retryMs?: number;
  /**
   * everysec's fsync runs on a thread of libuv's pool instead of this one (decision 0111): only for a
   * host with an event loop to hear back on, the IO thread; a shard worker sleeps in Atomics.wait.
   */
  backgroundSync?: boolean;
  /** TEST ONLY (PICCOLO_TEST_CRASH_AT=after-snapshot): SIGKILL the process between a snapshot's rename and the clean-up. */
  crashAfterSnapshot?: boolean;
}

/** What a shard reports about its persistence (INFO persistence, STATS, /metrics). */
export interface JournalStats {
  logBytes: number;
  snapshotBytes: number;
  /** When the last snapshot finished (ms since the epoch; 0: never). */
  lastSaveMs: number;
  saving: boolean;
  /** Effects recorded since the last snapshot started. */
  changesSinceSave: number;
  lastSaveOk: boolean;
  failed: boolean;
  fsyncs: number;
  fsyncTotalMs: number;
  fsyncMaxMs: number;
}

export class Journal {
  readonly effects = new EffectBuffer();
  core: ShardCore;
  /** Why writes are refused (a write or fsync failed); null while healthy. */
  failed: string | null = null;
  private failedAtMs = 0;
  private file: JournalFile | null = null;
  private seq: number;
  private segmentBytes = 0;
  /** Live segments, oldest first. */
  private readonly segments: { seq: number; bytes: number }[];
  /** First segment recovery replays (the newest snapshot's seq). */
  private replayFrom: number;
  private unsynced = false;
  private lastSyncMs = performance.now();
  /** A background fsync is running (backgroundSync): the next waits for it. */
  private syncing = false;
  /** A background fsync failed: the next commit() fails the journal with it. */
  private backgroundFailure: Error | null = null;
  private snapshot: SnapshotWriter | null = null;
  private snapshotFile: { name: string; bytes: number } | null;
  /** This shard's last multi-shard transaction and its state (recover.ts). */
  lastTxn: ShardRecovery["lastTxn"];
  /** The part written and not yet confirmed by every participant (0: none): a reload now drops it. */
  private pendingPart = 0;
  /** A backup in progress (backup.ts): every record of effects written to the log is handed to it too. */
  tap: ((record: Uint8Array) => void) | null = null;
  /** At start-up, a part that only the other shards can decide (resolveInDoubt). */
  inDoubt: InDoubtPart | null;
  private lastSaveMs: number;
  private lastSaveOk = true;
  private changesSinceSave = 0;
  private fsyncs = 0;
  private fsyncTotalMs = 0;
  private fsyncMaxMs = 0;

  /** Opens (recovering) the shard's directory. Throws JournalCorruptError. */
  static open(options: JournalOptions): { journal: Journal; recovery: ShardRecovery } {
    const recovery = recoverShard(options.fs, options.dir);
    return { journal: new Journal(options, recovery), recovery };
  }

  private constructor(
    private readonly options: JournalOptions,
    recovery: ShardRecovery,
  ) {
    this.core = recovery.core;
    this.core.effects = this.effects;
    this.segments = recovery.segments;
    this.replayFrom = recovery.replayFrom;
    this.snapshotFile = recovery.snapshot;
    this.lastTxn = recovery.lastTxn;
    this.inDoubt = recovery.inDoubt;
    // Redis's meaning: with no snapshot yet, the start counts as the last save (LASTSAVE is never 0).
    this.lastSaveMs = recovery.snapshot?.finishedAtMs ?? Date.now();
    const last = this.segments[this.segments.length - 1];
    this.seq = last === undefined ? Math.max(1, this.replayFrom) - 1 : last.seq;
    // Appends go to a fresh segment: the last one may end where a torn tail was cut.
    this.openNext();
  }

  get policy(): FsyncPolicy {
    return this.options.fsync;
  }

  /** Bytes in the live log (segments from the last snapshot's on). */
  logBytes(): number {
    let n = 0;
    for (const s of this.segments) if (s.seq >= this.replayFrom) n += s.bytes;
    return n;
  }

  private openNext(): void {
    if (this.file !== null) {
      // Sealed segments are always fsynced: recovery treats damage in one as corruption.
      this.file.sync();
      this.file.close();
      this.file = null;
    }
    this.seq++;
    this.file = this.options.fs.open(`${this.options.dir}/${segmentName(this.seq)}`);
    this.options.fs.syncDir(this.options.dir);
    this.segments.push({ seq: this.seq, bytes: 0 });
    this.segmentBytes = 0;
    this.unsynced = false;
  }

  /** After each command: a batch with big values is written out in chunks, so the buffer stays bounded. */
  afterCommand(): boolean {
    if (this.effects.bytes < JOURNAL_WRITE_CHUNK_BYTES) return true;
    return this.guard(() => this.writeEffects());
  }

  private writeEffects(): void {
    if (this.effects.empty) return;
    const rec = this.effects.seal();
    const n = this.effects.count;
    this.file!.write(rec, rec.length);
    this.tap?.(rec);
    this.segmentBytes += rec.length;
    this.segments[this.segments.length - 1]!.bytes += rec.length;
    this.changesSinceSave += n;
    this.effects.clear();
    this.unsynced = true;
  }

  private sync(): void {
    const t = performance.now();
    this.file!.sync();
    this.synced(t);
    this.lastSyncMs = performance.now();
    this.unsynced = false;
  }

  private synced(startMs: number): void {
    const ms = performance.now() - startMs;
    this.fsyncs++;
    this.fsyncTotalMs += ms;
    if (ms > this.fsyncMaxMs) this.fsyncMaxMs = ms;
  }

  /**
   * everysec's fsync without stopping this thread (decision 0111): it covers what was written before it
   * started; what is written meanwhile waits for the next. A failure fails the journal at the next
   * commit(), whichever file it was on: a failed fsync may have dropped pages of a segment sealed since.
   */
  private syncInBackground(): void {
    const t = performance.now();
    this.syncing = true;
    this.lastSyncMs = t;
    this.unsynced = false;
    this.file!.syncInBackground((err) => {
      this.syncing = false;
      if (err !== null) {
        if (this.failed === null) this.backgroundFailure = err;
        this.unsynced = true;
        return;
      }
      this.synced(t);
    });
  }

  /**
   * Makes what was recorded as durable as the policy promises; call before
   * answers leave. False when the journal failed (see the file comment).
   */
  commit(): boolean {
    if (this.failed !== null) return this.effects.empty;
    if (this.backgroundFailure !== null) {
      this.fail(this.backgroundFailure);
      this.backgroundFailure = null;
      return false;
    }
    if (this.effects.empty && !this.unsynced) return true; // a batch of reads: nothing to do
    // Inline rather than through guard(): this runs at every publish, and allocates nothing.
    try {
      this.writeEffects();
      if (this.options.fsync === "always" && this.unsynced) this.sync();
      if (this.segmentBytes >= WAL_SEGMENT_BYTES) this.openNext();
      return true;
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
  }

  private guard(work: () => void): boolean {
    try {
      work();
      return true;
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
  }

  private fail(err: Error): void {
    const code = (err as NodeJS.ErrnoException).code;
    this.failed = `${code ?? "error"}: ${err.message}`;
    this.failedAtMs = performance.now();
    this.effects.clear();
    if (this.snapshot !== null) {
      this.snapshot.abandon();
      this.snapshot = null;
      this.lastSaveOk = false;
    }
    try {
      this.file?.close();
    } catch {
      // the file is abandoned either way
    }
    this.file = null;
    this.options.log("error", `cannot write the log: ${this.failed}; this shard refuses writes, reads go on`, {
      dir: this.options.dir,
    });
  }

  /**
   * The map as it is on disk, read back as a restart would. After a
   * failure, the writes whose answers were turned into STORAGE_FAILED are
   * gone from it; on DEBUG RELOAD it proves the files hold the map. The
   * host swaps its core for this one.
   */
  reload(): ShardCore {
    // Only this shard's own last part can be in doubt here, and the journal knows its fate: one
    // still pending when the failure came was not written everywhere; any other was confirmed.
    const recovery = recoverShard(this.options.fs, this.options.dir, (id) =>
      id === this.pendingPart ? "drop" : "apply",
    );
    this.pendingPart = 0;
    this.lastTxn = recovery.lastTxn;
    this.segments.length = 0;
    this.segments.push(...recovery.segments);
    this.seq = Math.max(this.seq, recovery.segments[recovery.segments.length - 1]?.seq ?? 0);
    this.core.effects = null;
    this.core = recovery.core;
    this.core.effects = this.effects;
    if (recovery.truncatedTail !== null)
      this.options.log("warn", "cut a torn write off the log after the failure", recovery.truncatedTail);
    return this.core;
  }

  /**
   * Periodic work, between batches: the everysec fsync, snapshot steps,
   * starting a snapshot when the log has grown, retrying after a failure.
   * Returns true while a snapshot is in progress (the host should come
   * back soon rather than sleep).
   */
  tick(nowMs: number): boolean {
    if (this.failed !== null) {
      if (performance.now() - this.failedAtMs >= (this.options.retryMs ?? JOURNAL_RETRY_MS)) this.retry();
      return false;
    }
    if (
      this.unsynced &&
      !this.syncing &&
      this.options.fsync === "everysec" &&
      performance.now() - this.lastSyncMs >= EVERYSEC_INTERVAL_MS
    ) {
      if (this.options.backgroundSync === true) {
        if (!this.guard(() => this.syncInBackground())) return false;
      } else if (!this.guard(() => this.sync())) return false;
    }
    if (this.snapshot === null) {
      const log = this.logBytes();
      if (log >= this.options.snapshotLogBytes && log >= (this.snapshotFile?.bytes ?? 0)) this.startSnapshot(nowMs);
    }
    if (this.snapshot !== null) this.snapshotStep(this.options.snapshotStepKeys ?? SNAPSHOT_STEP_KEYS);
    return this.snapshot !== null;
  }

  private retry(): void {
    this.failedAtMs = performance.now();
    try {
      this.openNext();
      const probe = new Uint8Array(HEADER_BYTES);
      sealFrame(probe, JournalRecord.EFFECTS, HEADER_BYTES); // an empty batch: replays as nothing
      this.file!.write(probe, probe.length);
      this.segments[this.segments.length - 1]!.bytes += probe.length;
      this.segmentBytes += probe.length;
      this.sync();
      this.failed = null;
      this.options.log("warn", "the log can be written again; this shard accepts writes", { dir: this.options.dir });
    } catch (err) {
      try {
        this.file?.close();
      } catch {
        // abandoned
      }
      this.file = null;
      // The probe segment goes, or every retry would leave one more file behind, and a half-written
      // probe in a segment that is no longer the last would read as corruption at the next start.
      const probe = this.segments[this.segments.length - 1];
      if (probe !== undefined && probe.seq === this.seq) {
        try {
          this.options.fs.remove(`${this.options.dir}/${segmentName(this.seq)}`);
          this.options.fs.syncDir(this.options.dir);
          this.segments.pop();
          this.seq--;
        } catch {
          // left as it is: the next retry opens the segment after it, and recovery judges it by its bytes
        }
      }
      this.options.log("warn", `the log still cannot be written: ${(err as Error).message}`, { dir: this.options.dir });
    }
  }

  /** Starts a snapshot (BGSAVE, or the log grew); false when one is already running or writes fail. */
  startSnapshot(nowMs: number): boolean {
    if (this.snapshot !== null || this.failed !== null) return false;
    return this.guard(() => {
      this.writeEffects();
      this.openNext(); // seals (and fsyncs) the current segment: the snapshot replays from the new one
      this.snapshot = new SnapshotWriter(
        this.options.fs,
        this.options.dir,
        this.seq,
        this.core,
        nowMs,
        this.lastTxn.id,
      );
      this.changesSinceSave = 0;
    });
  }

  /** Runs the snapshot in progress to its end now (SAVE). False when it failed. */
  finishSnapshot(): boolean {
    while (this.snapshot !== null) if (!this.snapshotStep(1 << 20)) return false;
    return this.lastSaveOk;
  }

  get saving(): boolean {
    return this.snapshot !== null;
  }

  private snapshotStep(keys: number): boolean {
    const w = this.snapshot!;
    return this.guard(() => {
      if (!w.step(keys)) {
        if (w.restarts > SNAPSHOT_MAX_RESTARTS) {
          this.options.log(
            "warn",
            "snapshot given up: the index was rebuilt under it too often; it will be tried again",
            {
              dir: this.options.dir,
            },
          );
          w.abandon();
          this.snapshot = null;
        }
        return;
      }
      // The log must be as durable as the snapshot before older segments go.
      this.writeEffects();
      if (this.unsynced) this.sync();
      // One clock reading for the file and for LASTSAVE, so a restart reports the same time.
      const finishedAtMs = Date.now();
      const { name, bytes } = w.finish(finishedAtMs);
      this.snapshot = null;
      if (this.options.crashAfterSnapshot === true) process.kill(process.pid, "SIGKILL");
      this.cleanUp(w.seq);
      this.snapshotFile = { name, bytes };
      this.lastSaveMs = finishedAtMs;
      this.lastSaveOk = true;
      this.options.log("info", "snapshot saved", { dir: this.options.dir, name, bytes, keys: w.keys });
    });
  }

  /** Deletes what the snapshot starting at `seq` covers: older segments and older snapshots. */
  private cleanUp(seq: number): void {
    const fs = this.options.fs;
    const dir = this.options.dir;
    for (const n of fs.list(dir)) {
      const m = /^(\d{16})\.wal$/.exec(n);
      if (m !== null && Number(m[1]) < seq) fs.remove(`${dir}/${n}`);
      if (/^snap-\d{16}\.snap$/.test(n) && n !== snapshotName(seq)) fs.remove(`${dir}/${n}`);
    }
    fs.syncDir(dir);
    while (this.segments.length > 0 && this.segments[0]!.seq < seq) this.segments.shift();
    this.replayFrom = seq;
  }

  stats(): JournalStats {
    return {
      logBytes: this.logBytes(),
      snapshotBytes: this.snapshotFile?.bytes ?? 0,
      lastSaveMs: this.lastSaveMs,
      saving: this.snapshot !== null,
      changesSinceSave: this.changesSinceSave + this.effects.count,
      lastSaveOk: this.lastSaveOk,
      failed: this.failed !== null,
      fsyncs: this.fsyncs,
      fsyncTotalMs: this.fsyncTotalMs,
      fsyncMaxMs: this.fsyncMaxMs,
    };
  }

  /**
   * Start-up: the other shards said whether the part in doubt completed
   * (txnCompleted in recover.ts). Applied, or cut off the log.
   */
  resolveInDoubt(completed: boolean): void {
    const part = this.inDoubt;
    if (part === null) return;
    this.inDoubt = null;
    if (completed) part.apply();
    else part.drop();
    this.lastTxn = { id: part.id, state: completed ? "applied" : "aborted" };
  }

  /**
   * A multi-shard transaction's part begins (docs/transactions.md): what
   * earlier commands recorded is written as a record of its own, and the
   * part's effects, recorded next, become one TXN_PART record. False when
   * the journal failed (or had: the part cannot be written).
   */
  beginPart(id: number, participants: readonly number[]): boolean {
    if (this.failed !== null) return false;
    if (!this.guard(() => this.writeEffects())) return false;
    this.effects.startPart(id, participants);
    this.pendingPart = id;
    return true;
  }

  /**
   * Writes the part and, unless the policy is `no`, fsyncs it: every
   * participant's part must be on disk before any of them goes on, or a
   * power loss could keep one part and lose another. False when that failed
   * (the journal has failed; the host reloads, which drops the part).
   */
  sealPart(): boolean {
    return this.guard(() => {
      this.writeEffects();
      if (this.options.fsync !== "no" && this.unsynced) this.sync();
    });
  }

  /** Every participant wrote its part: it stands. */
  confirmPart(id: number): void {
    this.pendingPart = 0;
    this.lastTxn = { id, state: "applied" };
  }

  /**
   * Another participant could not write its part: this one is voided by a
   * TXN_ABORT record, and the map is read back from disk without it. False
   * when the abort could not be written (the journal has failed; the
   * host's reload drops the part).
   */
  abortPart(id: number): boolean {
    const ok = this.guard(() => {
      const rec = new Uint8Array(HEADER_BYTES + 8);
      writeF64(rec, HEADER_BYTES, id);
      sealFrame(rec, JournalRecord.TXN_ABORT, rec.length);
      this.file!.write(rec, rec.length);
      this.segmentBytes += rec.length;
      this.segments[this.segments.length - 1]!.bytes += rec.length;
      this.unsynced = true;
      if (this.options.fsync !== "no") this.sync();
    });
    if (!ok) return false;
    this.pendingPart = 0;
    this.lastTxn = { id, state: "aborted" };
    // A snapshot walking the old map is abandoned with it (it starts again later).
    this.snapshot?.abandon();
    this.snapshot = null;
    this.reload();
    return true;
  }

  /** A clean stop: everything written and fsynced, whatever the policy. */
  close(): void {
    if (this.failed === null)
      this.guard(() => {
        this.writeEffects();
        // A background fsync still running covers what was written before it: it may not finish before exit.
        if (this.unsynced || this.syncing) this.sync();
      });
    this.snapshot?.abandon();
    this.snapshot = null;
    try {
      this.file?.close();
    } catch {
      // closing
    }
    this.file = null;
  }
}
