/**
 * A shard worker thread: the host around one ShardCore.
 *
 * The loop is the whole job: take every command waiting in the request ring,
 * apply it, write its result into the notify ring, publish the batch (one
 * wakeup for the IO thread however many results), and sleep in Atomics.wait
 * when there is nothing to do. Nothing here is shared but the two rings; the
 * map is private to this thread, so it needs no locks.
 *
 * The worker may block, the IO thread may not: when the notify ring is full
 * the worker waits for the IO thread to drain it (Atomics.wait on the ring's
 * tail). The IO thread always drains, so this cannot deadlock.
 *
 * Durable (a data directory; src/journal/): the worker first rebuilds its
 * map from its own directory, then reports ready. Every write records its
 * effect in the journal, and nothing is published before journal.commit()
 * (write, and under --fsync always fsync): one commit per published batch
 * covers every connection's commands in it (group commit). If the commit
 * fails, the unpublished answers are rewritten to STORAGE_FAILED before
 * anyone sees them, the map is reloaded from disk (dropping the writes
 * whose answers were just turned into failures), and writes are refused
 * until the disk works again; reads go on (docs/durability.md).
 */
import { parentPort, workerData } from "node:worker_threads";
import { assert } from "../assert.js";
import { ErrorCode } from "../errors.js";
import { budgetFs, realFs } from "../journal/files.js";
import { type BackupSlot, backupTick, executeBackupStep } from "../journal/backup.js";
import { executeJournaled } from "../journal/execute.js";
import { type FsyncPolicy, Journal } from "../journal/journal.js";
import { IdleTrimmer } from "../idle-trim.js";
import { EXPIRE_SWEEP_INTERVAL_MS, IDLE_TRIM_CHECK_MS, RING_RECORD_MAX_BYTES, SNAPSHOT_STEP_KEYS } from "../limits.js";
import { MessageReader, MessageWriter } from "../ring/messages.js";
import { RingReader, RingWriter } from "../ring/ring.js";
import {
  CommandView,
  FSYNC_CODE,
  isWriteCommand,
  Op,
  Result,
  TRACE_TRAILER_BYTES,
  TRAILER_COMMIT_END,
  TRAILER_COMMIT_START,
  writeF64,
} from "./command.js";
import { traceClock } from "../io/trace.js";
import { History } from "./history.js";
import { Barrier } from "./txn-barrier.js";
import { WatchReads } from "./watch-reads.js";
import { runBranch, TXN_FAILURE_READS_ONLY, TXN_SUCCESS_READS_ONLY, TxnPart } from "./txn.js";
import { ShardCore } from "./execute.js";
import { pinCurrentThread } from "./pin.js";
import { sweepTick } from "./sweep.js";

export interface ShardWorkerData {
  shard: number;
  requestRing: SharedArrayBuffer;
  notifyRing: SharedArrayBuffer;
  /** Core to pin to, or -1 to leave the thread unpinned. */
  pinCore: number;
  /**
   * control[0] = 1: stop (flush and fsync the journal, post "closed", return).
   * control[1]: start-up's verdict on this shard's transaction part in
   * doubt, 1 completed, 2 not (the IO thread asked every shard).
   */
  control: SharedArrayBuffer;
  /** The barrier slots multi-shard transactions meet on (src/shard/txn-barrier.ts). */
  txnBarrier: SharedArrayBuffer;
  /** Bytes of change history kept for watchers (src/shard/history.ts). */
  watchHistoryBytes: number;
  /** Durable: this shard's journal directory and policy; null keeps the map in memory only. */
  journal: {
    dir: string;
    fsync: FsyncPolicy;
    snapshotLogBytes: number;
    diskBudget: number;
    crashAfterSnapshot: boolean;
  } | null;
}

/** Messages a worker posts to the IO thread besides results (which go through the ring). */
export type WorkerMessage =
  | { type: "pin"; ok: boolean; detail: string }
  | {
      type: "recovered";
      lastTxn: { id: number; state: string };
      inDoubt: { id: number; participants: number[] } | null;
    }
  | { type: "ready"; keys: number; ms: number; truncatedTail: object | null; removed: string[] }
  | { type: "failed"; message: string }
  | { type: "closed" }
  | { type: "log"; level: "info" | "warn" | "error"; message: string; detail?: object };

/** Results between two publishes: bounds the IO thread's wait for the first answers of a long batch. */
const PUBLISH_EVERY = 64;

function main(data: ShardWorkerData): void {
  if (data.pinCore >= 0) parentPort!.postMessage({ type: "pin", ...pinCurrentThread(data.pinCore) });
  const requests = new MessageReader(new RingReader(data.requestRing));
  const notifyRing = new RingWriter(data.notifyRing);
  const results = new MessageWriter(notifyRing, RING_RECORD_MAX_BYTES);
  const post = (m: WorkerMessage): void => parentPort!.postMessage(m);
  let journal: Journal | null = null;
  let core: ShardCore;
  if (data.journal === null) core = new ShardCore();
  else {
    const j = data.journal;
    const t = performance.now();
    try {
      const fs = j.diskBudget > 0 ? budgetFs(realFs, { left: j.diskBudget }) : realFs;
      const opened = Journal.open({
        dir: j.dir,
        fsync: j.fsync,
        snapshotLogBytes: j.snapshotLogBytes,
        fs,
        crashAfterSnapshot: j.crashAfterSnapshot,
        log: (level, message, detail) =>
          post({ type: "log", level, message, ...(detail === undefined ? {} : { detail }) }),
      });
      journal = opened.journal;
      const doubt = journal.inDoubt;
      post({
        type: "recovered",
        lastTxn: journal.lastTxn,
        inDoubt: doubt === null ? null : { id: doubt.id, participants: doubt.participants },
      });
      if (doubt !== null) {
        // Only the other shards know whether every part of it was written: the IO thread asks them.
        const control = new Int32Array(data.control);
        while (Atomics.load(control, 1) === 0) Atomics.wait(control, 1, 0, 1000);
        journal.resolveInDoubt(Atomics.load(control, 1) === 1);
      }
      core = journal.core;
      // Keys whose TTL ran out while the node was down go now, not at their first read.
      sweepTick(core, Date.now());
      post({
        type: "ready",
        keys: core.store.size,
        ms: performance.now() - t,
        truncatedTail: opened.recovery.truncatedTail,
        removed: opened.recovery.removed,
      });
    } catch (err) {
      post({ type: "failed", message: (err as Error).message });
      return;
    }
  }
  if (journal === null) {
    post({ type: "recovered", lastTxn: { id: 0, state: "applied" }, inDoubt: null });
    post({ type: "ready", keys: 0, ms: 0, truncatedTail: null, removed: [] });
  }
  const barrier = new Barrier(data.txnBarrier, (message) => post({ type: "log", level: "warn", message }));
  const txnPart = new TxnPart();
  // Changes for watchers: recorded from here on (what recovery rebuilt is the starting state, not changes).
  const history = new History(data.watchHistoryBytes, false);
  const watchReads = new WatchReads(history);
  core.changes = history;
  /** The history's last seq at the last good commit: what a failed commit takes back. */
  let committedSeq = 0;
  const command = new CommandView();
  const result = new Result();
  /** A node backup's part on this shard (src/journal/backup.ts), while one runs. */
  const backup: BackupSlot = { backup: null };
  /** When the last sweep tick ran, on the monotonic clock (a wall-clock step must not stop the ticks). */
  let lastTickMs = performance.now();

  /** Ring positions of the results written since the last commit (durable only): rewritten if it fails. */
  let pending = new Int32Array(1024);
  let pendingCount = 0;

  /**
   * The journal failed: no answer written since the last good commit may
   * leave as written (its write is in memory, not on disk). Each becomes
   * STORAGE_FAILED, and the map is taken back from disk.
   */
  const failPending = (): void => {
    watchReads.rollback(committedSeq);
    const bytes = notifyRing.bytes;
    for (let i = 0; i < pendingCount; i++) {
      const at = pending[i]!;
      bytes[at + 4] = ErrorCode.STORAGE_FAILED;
      bytes[at + 6] = 0; // no value (its bytes stay, unread)
    }
    pendingCount = 0;
    core = journal!.reload();
    core.changes = history;
  };

  /**
   * Traced writes' trailers in the notify ring (docs/tracing.md), written
   * but not yet published: the commit that covers them stamps its start and
   * end into them before anyone can read them.
   */
  const tracedAt: number[] = [];
  const fsyncCode = journal === null ? 0 : FSYNC_CODE[journal.policy];

  /** The one door out: nothing is published before the journal covers it. */
  const commit = (): boolean => {
    if (journal === null) return true;
    const t = tracedAt.length > 0 ? traceClock() : 0;
    if (journal.commit()) {
      pendingCount = 0;
      committedSeq = history.lastSeq;
      if (t > 0) stampCommit(t, traceClock());
      return true;
    }
    tracedAt.length = 0;
    failPending();
    return false;
  };

  const stampCommit = (start: number, end: number): void => {
    const bytes = notifyRing.bytes;
    for (const at of tracedAt) {
      writeF64(bytes, at + TRAILER_COMMIT_START, start);
      writeF64(bytes, at + TRAILER_COMMIT_END, end);
    }
    tracedAt.length = 0;
  };

  const publish = (): void => {
    commit();
    notifyRing.publish();
  };

  /** Parked watch reads with news (only committed changes: the commit comes first), or whose time ran out. */
  const wakeWatchers = (): void => {
    const now = Date.now();
    if (!watchReads.due(now)) return;
    if (journal !== null && !commit()) return; // failed: its changes were taken back; the next wake looks again
    watchReads.wake(now, emit);
  };

  /** Writes a result into the notify ring; returns where, or -1 when it went through the backlog. */
  const emit = (r: Result): number => {
    let bytes = r.byteLength();
    for (;;) {
      const at = results.tryReserve(bytes);
      if (at >= 0) {
        r.encode(notifyRing.bytes, at);
        if (journal !== null) {
          if (pendingCount === pending.length) {
            const grown = new Int32Array(pending.length * 2);
            grown.set(pending);
            pending = grown;
          }
          pending[pendingCount++] = at;
        }
        return at;
      }
      // Everything below copies the answer out or publishes: make what is recorded durable first.
      if (!commit()) {
        r.status = ErrorCode.STORAGE_FAILED;
        r.value = null;
        bytes = r.byteLength();
      }
      if (bytes > RING_RECORD_MAX_BYTES || results.backlogCount > 0) {
        // Too big for one record: copy it out (the value view is only valid
        // until the next command) and let the writer fragment it.
        const copy = new Uint8Array(bytes);
        r.encode(copy, 0);
        results.enqueue(copy);
        drainBacklog();
        return -1;
      }
      publish();
      notifyRing.waitForRoom(bytes, 1000);
    }
  };

  // Memory back from V8 once this shard goes idle (decision 0299): every IDLE_TRIM_CHECK_MS, checked
  // where the sweep is, the trimmer hears whether any command came in since the last check.
  const trimmer = new IdleTrimmer();
  let trimCheckMs = performance.now();
  let busySinceCheck = false;
  const trimIfDue = (): void => {
    const nowMs = performance.now();
    if (nowMs - trimCheckMs < IDLE_TRIM_CHECK_MS) return;
    trimCheckMs = nowMs;
    trimmer.check(!busySinceCheck);
    busySinceCheck = false;
  };

  // A sweep tick is due every EXPIRE_SWEEP_INTERVAL_MS: checked after each
  // batch, when the wait below times out (an idle shard), and every
  // PUBLISH_EVERY commands of a long batch, so a shard that never runs out
  // of requests still sweeps on time.
  const sweepIfDue = (): void => {
    const tickMs = performance.now();
    if (tickMs - lastTickMs < EXPIRE_SWEEP_INTERVAL_MS) return;
    lastTickMs = tickMs;
    sweepTick(core, Date.now());
  };

  /** The journal's periodic work (everysec fsync, snapshot steps); true while a snapshot runs. */
  const journalTick = (): boolean => {
    if (journal === null) return false;
    const wasFailed = journal.failed !== null;
    const saving = journal.tick(Date.now());
    if (!wasFailed && journal.failed !== null) failPending();
    return saving;
  };

  const drainBacklog = (): void => {
    while (!results.pump()) {
      publish();
      notifyRing.waitForRoom(RING_RECORD_MAX_BYTES, 1000);
    }
  };

  // Under --fsync always each publish costs an fsync: publish less often mid-batch.
  const publishEvery = journal?.policy === "always" ? 1024 : PUBLISH_EVERY;
  const control = new Int32Array(data.control);
  for (;;) {
    if (Atomics.load(control, 0) === 1) {
      if (notifyRing.dirty) publish();
      journal?.close();
      backup.backup?.abandon();
      post({ type: "closed" });
      return;
    }
    let batch = 0;
    for (let m = requests.next(); m !== null; m = requests.next()) {
      assert(command.wrap(m), "the IO thread writes well-formed commands");
      result.reset(command.tag);
      if (command.traced) {
        result.traced = true;
        result.tPicked = traceClock();
        result.tCommitStart = 0;
        result.tCommitEnd = 0;
        result.fsync = fsyncCode;
      }
      if (command.op === Op.WATCH) {
        if (!watchReads.read(command, result, Date.now())) {
          requests.consume(); // parked: answered by wakeWatchers() later
          continue;
        }
      } else if (command.op === Op.TXN && command.arg0 >= 0) executeShared();
      else if (command.op === Op.BACKUP) executeBackupStep(backup, command, result, core, journal, realFs);
      else if (journal === null) {
        core.execute(command, result);
        backup.backup?.commit(false); // in memory, a backup's effects are written every 1 MiB
      } else {
        executeDurable(journal);
        if (core !== journal.core) {
          core = journal.core; // DEBUG RELOAD, or a failure, replaced the map
          core.changes = history;
        }
      }
      if (result.traced) {
        result.tExecuted = traceClock();
        const at = emit(result);
        // A write's answer waits for the journal commit that covers it: that commit stamps it (above).
        if (at >= 0 && journal !== null && isWriteCommand(command.op, command.flags))
          tracedAt.push(at + result.byteLength() - TRACE_TRAILER_BYTES);
      } else emit(result);
      requests.consume();
      if (++batch % publishEvery === 0) {
        requests.ring.release();
        wakeWatchers();
        publish();
        sweepIfDue();
        // A shard that never runs out of requests still fsyncs each second and moves its snapshot on.
        journalTick();
        backupTick(backup, core, SNAPSHOT_STEP_KEYS);
      }
    }
    requests.ring.release();
    wakeWatchers();
    if (notifyRing.dirty) publish();

    if (batch > 0) busySinceCheck = true;
    else trimIfDue();
    sweepIfDue();
    wakeWatchers(); // keys the sweep expired
    const saving = journalTick();
    const walking = backupTick(backup, core, SNAPSHOT_STEP_KEYS);
    if (notifyRing.dirty) publish(); // a SAVE's answer, or answers failed by the tick
    // Sleep until the next tick is due, not a whole interval from now (not at all while a snapshot or backup walks).
    if (batch === 0 && !saving && !walking)
      requests.ring.wait(Math.max(1, EXPIRE_SWEEP_INTERVAL_MS - (performance.now() - lastTickMs)));
  }

  /**
   * A transaction's part with other participants (docs/transactions.md):
   * meet them to learn the verdict of all compares, run the chosen branch,
   * and, if it writes on a durable shard, write the part as one record and
   * meet them again; if any participant could not write its part, every
   * part is voided before anyone goes on, and the answer is STORAGE_FAILED.
   */
  function executeShared(): void {
    // Answers already written leave now: the wait below is for other shards, not for their clients.
    if (notifyRing.dirty) publish();
    assert(txnPart.wrap(command.value), "the IO thread writes well-formed transaction parts");
    const slot = command.arg0;
    const n = command.arg1;
    const success = barrier.vote(slot, n, txnPart.allHold(core, command.nowMs));
    result.flag = success ? 1 : 0;
    const readsOnly = (command.flags & (success ? TXN_SUCCESS_READS_ONLY : TXN_FAILURE_READS_ONLY)) !== 0;
    if (journal === null || readsOnly) {
      result.value = runBranch(txnPart, success, (v, r) => core.execute(v, r), command.flags);
      return;
    }
    const j = journal;
    const wasFailed = j.failed !== null;
    const seqBefore = history.lastSeq;
    let value: Uint8Array | null = null;
    let written = j.beginPart(txnPart.id, txnPart.participants);
    if (written) {
      value = runBranch(txnPart, success, (v, r) => j.core.execute(v, r), command.flags);
      written = j.sealPart();
    }
    if (barrier.written(slot, n, written)) {
      j.confirmPart(txnPart.id);
      result.value = value;
      return;
    }
    // Some part is not on disk: void ours (an abort record, the map read back without it), or, if
    // ours is what failed, take the map back from disk, which drops our part.
    if (written) {
      watchReads.rollback(seqBefore);
      if (!j.abortPart(txnPart.id)) failPending();
    } else if (!wasFailed) failPending();
    core = j.core;
    core.changes = history;
    barrier.aborted(slot, n);
    result.status = ErrorCode.STORAGE_FAILED;
    result.value = null;
  }

  /** One command on a durable shard (src/journal/execute.ts); a journal failure fails every pending answer. */
  function executeDurable(j: Journal): void {
    if (!executeJournaled(j, command, result)) {
      failPending();
      result.status = ErrorCode.STORAGE_FAILED;
      result.value = null;
    }
  }
}

main(workerData as ShardWorkerData);
