/**
 * The IO thread's side of the shards: where commands go and results come from.
 *
 * Two backends behind one interface:
 *   - ThreadedShards: one worker thread per shard, a request ring and a
 *     notify ring each (the design; see docs/architecture.md).
 *   - InlineShards (--shards 0): the maps live on the IO thread itself and a
 *     command runs the moment it is sent. No thread hop, no rings: the
 *     baseline the benchmark compares the threaded design against.
 *
 * The IO loop calls send() for each command as it parses a socket's bytes,
 * then flush() once at the end of that turn, so every shard gets one wakeup
 * per batch however many commands the batch holds.
 */
import { cpus } from "node:os";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Worker } from "node:worker_threads";
import { assert } from "../assert.js";
import type { ClusterInfo } from "../protocol/cluster-info.js";
import { MAX_SHARD_BACKLOG_BYTES, MAX_SHARD_BACKLOG_COUNT, RING_BYTES, RING_RECORD_MAX_BYTES } from "../limits.js";
import { MessageReader, MessageWriter } from "../ring/messages.js";
import { type BackupSlot, backupTick, executeBackupStep } from "../journal/backup.js";
import { executeJournaled } from "../journal/execute.js";
import { budgetFs, realFs } from "../journal/files.js";
import { type FsyncPolicy, Journal } from "../journal/journal.js";
import { createRingBuffer, RingReader, RingWriter } from "../ring/ring.js";
import type { ShardWorkerData, WorkerMessage } from "../shard/worker.js";
import { BarrierSlots, createBarrierTable } from "../shard/txn-barrier.js";
import { txnCompleted } from "../journal/recover.js";
import { StartError } from "../start-failure.js";
import { ErrorCode } from "../errors.js";
import {
  type CommandFields,
  CommandView,
  commandBytes,
  encodeCommand,
  Op,
  RESULT_HEADER_BYTES,
  Result,
  readU32,
} from "../shard/command.js";
import { ShardCore } from "../shard/execute.js";
import {
  BACKUP_INLINE_SLICE_MS,
  DEFAULT_WATCH_HISTORY_BYTES,
  SNAPSHOT_INLINE_SLICE_MS,
  EXPIRE_SWEEP_INTERVAL_MS,
  SNAPSHOT_STEP_KEYS,
} from "../limits.js";
import { sweepTick } from "../shard/sweep.js";
import { History } from "../shard/history.js";
import { WatchReads } from "../shard/watch-reads.js";
import type { BackupSource } from "./backup.js";
import type { Trace } from "./trace.js";

export type { ClusterInfo } from "../protocol/cluster-info.js";

/**
 * Where a single node's backup keeps its part files while it runs: beside
 * the data (the data directory's backup-tmp/, same disk, removed when the
 * backup ends or at the next one), or for a node in memory the system's
 * temporary directory.
 */
export function backupDir(durability: Durability | null): string {
  return durability === null
    ? join(tmpdir(), `piccolo-backup-${process.pid}`)
    : join(dirname(durability.shardDir(0)), "backup-tmp");
}

export interface ShardBackend {
  /**
   * Results come back in the order the commands were sent (one shard on the
   * IO thread): a Redis connection's hot commands are then answered as a run
   * (src/resp/hot.ts).
   */
  readonly inOrder?: boolean;
  /**
   * An Op.TXN may carry the transaction as its caller built it
   * (CommandFields.txn) instead of its encoded bytes: one shard, run the
   * moment it is sent, while the caller's keys and values are still valid.
   */
  readonly runsTxnInPlace?: boolean;
  /** Cluster mode only: the partition map and each partition's state here. */
  clusterInfo?(): Promise<ClusterInfo>;
  /** Cluster mode only: the node's client listener is up at host:port (the backend joins its peers now). */
  listening?(clientAddress: string): Promise<void>;
  /**
   * Cluster mode only: asks the partition's leader to take the next
   * membership step of moving its replica on `remove` to `add`; an error
   * message, or null.
   */
  replaceReplica?(partition: number, remove: number, add: number): Promise<string | null>;
  /**
   * Cluster mode only: forgets member `member` for good (it holds no replica
   * any more): an error message, or null (also when already forgotten).
   */
  forgetMember?(member: number): Promise<string | null>;
  /** Cluster mode only: asks the partition's leader to hand over to `member`; an error message, or null. */
  transferLeader?(partition: number, member: number): Promise<string | null>;
  /**
   * Cluster mode, before a graceful stop: hand this member's leaderships to
   * caught-up peers (src/cluster/admin.ts, handOffLeadership), so clients see a short
   * pause instead of an election timeout. Serving goes on meanwhile.
   */
  handOffLeadership?(timeoutMs: number): Promise<{ led: number; left: number }>;
  /**
   * Transactions across shards (a single node with worker threads): the
   * barrier slots their participants meet on (src/shard/txn-barrier.ts).
   * Absent: every transaction must stay on one shard (a cluster's
   * partitions; inline mode has one shard anyway).
   */
  txnSlots?: {
    /** A free slot, reset; -1 when every slot is in use. */
    acquire(): number;
    release(slot: number): void;
    /** Ids above every id the shards' journals hold (known once ready() resolved). */
    readonly firstId: number;
  };
  /** Names the numbering of watch positions (default: the node's start time, the history being in memory). */
  readonly watchRun?: string;
  /** Whether a watch read with nothing new waits at the shard (default true); else the Watch polls. */
  readonly watchParks?: boolean;
  /** Cluster mode only: relays a Redis PUBLISH to every other member (their subscribers get it). */
  publish?(channel: Uint8Array, message: Uint8Array): void;
  /** Number of shards (at least 1; inline mode has 1). */
  readonly count: number;
  /** How a backup reads this backend (src/io/backup.ts): shards walked into part files in `dir`, or partitions read whole. */
  readonly backup?: BackupSource;
  /**
   * Resolves once every shard has its map (a durable node recovers from its
   * data directory first) with what was recovered; rejects with the reason a
   * shard could not start (a damaged file: its name and offset).
   */
  ready?(): Promise<Recovered>;
  /** How a trace names this node (default "node"; a cluster member: "member N"). */
  readonly traceNode?: string;
  /** How a trace names shard `shard`'s thread: "worker 2", "inline" (docs/tracing.md). */
  traceWhere?(shard: number): string;
  /**
   * A traced command's result that carries no worker stamps (src/io/trace.ts):
   * the backend adds the spans it knows, from `sentAt` to `now`.
   */
  traceResult?(t: Trace, r: Result, sentAt: number, now: number, where: string): void;
  /** Sends one command to shard `shard`. Never drops: a full ring queues it. */
  send(shard: number, command: CommandFields): void;
  /** Publishes what send() wrote, one wakeup per shard. */
  flush(): void;
  /** True while some shard's backlog is over its limits (count or bytes): stop reading sockets. */
  congested(): boolean;
  close(): Promise<void>;
}

export interface ShardEvents {
  /** A command's result. `result.value` is valid only during the call. */
  onResult(result: Result): void;
  /** Called after a batch of results has been delivered (flush sockets now). */
  onBatchEnd(): void;
  /** Called when a congested backend has room again. */
  onDrain(): void;
  /** Cluster mode: another member relayed a Redis PUBLISH for this member's subscribers. */
  onPeerPublish?(channel: Uint8Array, message: Uint8Array): void;
  /** A worker said something worth logging (pinning outcome, crash). */
  onLog(level: "info" | "warn" | "error", message: string, detail?: object): void;
}

/** What the shards recovered at start-up, all together. */
export interface Recovered {
  keys: number;
  /** The slowest shard's recovery time: they recover in parallel. */
  ms: number;
}

/** A durable node's journal settings, handed to each shard (src/journal/). */
export interface Durability {
  shardDir(shard: number): string;
  fsync: FsyncPolicy;
  snapshotLogBytes: number;
}

/** TEST ONLY fault hooks for the journal, from the environment (never set in production). */
function journalTestHooks(): { diskBudget: number; crashAfterSnapshot: boolean } {
  return {
    diskBudget: Number(process.env.PICCOLO_TEST_DISK_BUDGET_BYTES ?? 0) || 0,
    crashAfterSnapshot: process.env.PICCOLO_TEST_CRASH_AT === "after-snapshot",
  };
}

/** What a shard's recovery repaired, logged the same way whichever thread recovered it. */
function logRecovery(events: ShardEvents, shard: number, truncatedTail: object | null, removed: string[]): void {
  if (truncatedTail !== null)
    events.onLog("warn", "cut a torn write off the end of the log (a crash while writing; never acknowledged)", {
      shard,
      ...truncatedTail,
    });
  if (removed.length > 0) events.onLog("info", "finished a clean-up a crash interrupted", { shard, removed });
}

export class InlineShards implements ShardBackend {
  readonly count = 1;
  /** One shard, executed here or held in order until the journal's commit (deliverHeld): results in send order. */
  readonly inOrder = true;
  /** A transaction runs inside send(): nothing to encode for it (src/shard/txn.ts, executeTxnAlone). */
  readonly runsTxnInPlace = true;
  /** The map lives on the IO thread: a traced command runs the moment it is sent (or, durable, once the turn's commit covers it). */
  traceWhere(): string {
    return "io (inline shard)";
  }
  readonly backup: BackupSource;
  private core: ShardCore;
  private readonly view = new CommandView();
  private readonly result = new Result();
  private readonly sweepTimer: NodeJS.Timeout;
  private readonly journal: Journal | null = null;
  private readonly recovered: Recovered = { keys: 0, ms: 0 };
  /**
   * Durable: the turn's answers, encoded, held until the journal's commit
   * covers them (flush()); the answers of a failed commit become
   * STORAGE_FAILED. In memory only, answers go out as the commands run.
   */
  private held = new Uint8Array(64 * 1024);
  private heldEnd = 0;
  /** The other buffer: answers held while the held ones are handed out (deliverHeld). */
  private spareHeld = new Uint8Array(64 * 1024);
  private deliveringHeld = false;
  private readonly history: History;
  private readonly watchReads: WatchReads;
  /** The history's last seq at the last good commit: what a failed commit takes back. */
  private committedSeq = 0;
  private waking = false;
  /** A node backup's part (src/journal/backup.ts), while one runs. */
  private readonly backupPart: BackupSlot = { backup: null };
  private walking = false;

  constructor(
    private readonly events: ShardEvents,
    durability: Durability | null = null,
    watchHistoryBytes = DEFAULT_WATCH_HISTORY_BYTES,
  ) {
    this.history = new History(watchHistoryBytes, false);
    this.watchReads = new WatchReads(this.history);
    this.backup = { kind: "shards", dir: backupDir(durability) };
    if (durability === null) this.core = new ShardCore();
    else {
      const t = performance.now();
      const hooks = journalTestHooks();
      let journal: Journal;
      try {
        let recovery: { truncatedTail: object | null; removed: string[] };
        ({ journal, recovery } = Journal.open({
          dir: durability.shardDir(0),
          fsync: durability.fsync,
          // The IO thread serves every client: everysec's fsync must not stop it (decision 0111).
          backgroundSync: true,
          snapshotLogBytes: durability.snapshotLogBytes,
          fs: hooks.diskBudget > 0 ? budgetFs(realFs, { left: hooks.diskBudget }) : realFs,
          crashAfterSnapshot: hooks.crashAfterSnapshot,
          log: (level, message, detail) => events.onLog(level, message, detail),
        }));
        logRecovery(events, 0, recovery.truncatedTail, recovery.removed);
      } catch (err) {
        throw new StartError(`cannot start: shard 0: ${(err as Error).message}`);
      }
      this.journal = journal;
      // One shard: a transaction part in doubt (from a directory a threaded node wrote) is decided by its own record.
      const doubt = journal.inDoubt;
      if (doubt !== null)
        journal.resolveInDoubt(
          txnCompleted(doubt.id, doubt.participants, (s) => (s === 0 ? journal.lastTxn : { id: 0, state: "applied" })),
        );
      this.core = journal.core;
      sweepTick(this.core, Date.now());
      this.recovered = { keys: this.core.store.size, ms: performance.now() - t };
    }
    this.core.changes = this.history;
    // The sweep's tick (src/shard/sweep.ts) and the journal's (everysec, snapshots); here on the IO thread.
    this.sweepTimer = setInterval(() => this.tick(), EXPIRE_SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
  }

  async ready(): Promise<Recovered> {
    return this.recovered;
  }

  private tick(): void {
    sweepTick(this.core, Date.now());
    const j = this.journal;
    if (j === null) return this.wakeWatchers();
    if (j.commit()) this.committedSeq = this.history.lastSeq;
    else this.failHeld(null);
    this.wakeWatchers();
    // A snapshot runs in steps between turns (the IO thread must not stall): walkSnapshot.
    if (this.journalTick() && !this.saving) {
      this.saving = true;
      setImmediate(this.walkSnapshot);
    }
  }

  /** The journal's periodic work (the everysec fsync, a snapshot's next step); true while a snapshot runs. */
  private journalTick(): boolean {
    const j = this.journal!;
    const wasFailed = j.failed !== null;
    const saving = j.tick(Date.now());
    if (!wasFailed && j.failed !== null) this.failHeld(null);
    return saving;
  }

  private saving = false;

  /** A snapshot's walk: steps for at most SNAPSHOT_INLINE_SLICE_MS per turn, clients served between. */
  private readonly walkSnapshot = (): void => {
    const until = performance.now() + SNAPSHOT_INLINE_SLICE_MS;
    while (!this.closed && this.journalTick())
      if (performance.now() >= until) return void setImmediate(this.walkSnapshot);
    this.saving = false;
  };

  /** Parked watch reads with news, or whose time ran out (after the commit: only durable changes). */
  private wakeWatchers(): void {
    if (this.waking || !this.watchReads.due(Date.now())) return;
    this.waking = true;
    try {
      this.watchReads.wake(Date.now(), (r) => this.events.onResult(r));
    } finally {
      this.waking = false;
    }
    this.events.onBatchEnd();
  }

  send(_shard: number, c: CommandFields): void {
    // No ring to cross: the executor reads the fields as they are (the threaded path encodes them).
    this.view.of(c);
    const r = this.result.reset(c.tag);
    const j = this.journal;
    if (c.op === Op.WATCH) {
      if (!this.watchReads.read(this.view, r, Date.now())) return; // parked: answered by wakeWatchers()
    } else if (c.op === Op.BACKUP) {
      executeBackupStep(this.backupPart, this.view, r, this.core, j, realFs);
      if (this.backupPart.backup !== null && !this.walking) {
        this.walking = true;
        setImmediate(this.walkBackup);
      }
    } else if (j === null) {
      this.core.execute(this.view, r);
      this.backupPart.backup?.commit(false);
    } else {
      if (!executeJournaled(j, this.view, r)) this.failHeld(r);
      if (this.core !== j.core) {
        this.core = j.core;
        this.core.changes = this.history;
      }
    }
    if (j === null) {
      this.events.onResult(r);
      return;
    }
    const n = r.byteLength();
    if (this.heldEnd + n > this.held.length) {
      const grown = new Uint8Array(Math.max(this.held.length * 2, this.heldEnd + n));
      grown.set(this.held.subarray(0, this.heldEnd));
      this.held = grown;
    }
    r.encode(this.held, this.heldEnd);
    this.heldEnd += n;
    // Bounded as a worker's notify ring bounds its answers: past RING_BYTES, commit and deliver now.
    if (this.heldEnd > RING_BYTES) this.deliverHeld();
  }

  /**
   * A backup's walk on the IO thread: steps of SNAPSHOT_STEP_KEYS for at
   * most BACKUP_INLINE_SLICE_MS per turn, so clients are served between them.
   */
  private readonly walkBackup = (): void => {
    const until = performance.now() + BACKUP_INLINE_SLICE_MS;
    while (backupTick(this.backupPart, this.core, SNAPSHOT_STEP_KEYS))
      if (performance.now() >= until) return void setImmediate(this.walkBackup);
    this.walking = false;
  };

  /** The journal failed: every held answer (and `r`) becomes STORAGE_FAILED; the map comes back from disk. */
  private failHeld(r: Result | null): void {
    for (let at = 0; at < this.heldEnd; ) {
      this.held[at + 4] = ErrorCode.STORAGE_FAILED;
      this.held[at + 6] = 0;
      at += RESULT_HEADER_BYTES + readU32(this.held, at + 32);
    }
    if (r !== null) {
      r.status = ErrorCode.STORAGE_FAILED;
      r.value = null;
    }
    this.watchReads.rollback(this.committedSeq);
    this.core = this.journal!.reload();
    this.core.changes = this.history;
  }

  flush(): void {
    if (this.journal !== null && this.heldEnd > 0) this.deliverHeld();
    this.wakeWatchers();
    this.events.onBatchEnd();
  }

  /**
   * Commits, then hands the held answers out in order. An answer handed out
   * may send more commands (a command's next step), whose answers are held
   * anew: into the other buffer, never over those still being handed out,
   * and taken by the next round of the loop.
   */
  private deliverHeld(): void {
    if (this.deliveringHeld) return; // the loop below takes what is held meanwhile
    this.deliveringHeld = true;
    try {
      while (this.heldEnd > 0) {
        if (this.journal!.commit()) this.committedSeq = this.history.lastSeq;
        else this.failHeld(null);
        const held = this.held;
        const end = this.heldEnd;
        this.held = this.spareHeld;
        this.spareHeld = held.length > 8 * 1024 * 1024 ? new Uint8Array(64 * 1024) : held;
        this.heldEnd = 0;
        for (let at = 0; at < end; ) {
          const n = RESULT_HEADER_BYTES + readU32(held, at + 32);
          assert(this.result.decode(held.subarray(at, at + n)), "held answers are well formed");
          this.events.onResult(this.result);
          at += n;
        }
      }
    } finally {
      this.deliveringHeld = false;
    }
  }

  congested(): boolean {
    return false;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweepTimer);
    this.backupPart.backup?.abandon();
    this.journal?.close();
  }

  /** Closed: a snapshot's walk stops where it is (the journal's close ends it). */
  private closed = false;
}

interface ShardLink {
  worker: Worker;
  /** [0] = 1 asks the worker to stop cleanly (its journal flushed and fsynced). */
  control: Int32Array;
  closed: (() => void) | null;
  requests: MessageWriter;
  results: MessageReader;
  waiting: boolean;
}

export class ThreadedShards implements ShardBackend {
  readonly count: number;
  traceWhere(shard: number): string {
    return `worker ${shard}`;
  }
  readonly backup: BackupSource;
  readonly txnSlots?: ShardBackend["txnSlots"];
  /** Above every transaction id the shards' journals hold (set once every shard recovered). */
  private firstTxnId = 1;
  private readonly links: ShardLink[] = [];
  private readonly result = new Result();
  private closing = false;
  private wasCongested = false;
  private pinWarned = false;

  private readonly readyAll: Promise<Recovered>;
  /** Until every shard is ready, a worker that exits fails the start instead of stopping the node. */
  private started = false;

  constructor(
    count: number,
    private readonly events: ShardEvents,
    pin = true,
    durability: Durability | null = null,
    watchHistoryBytes = DEFAULT_WATCH_HISTORY_BYTES,
  ) {
    assert(count >= 1, "threaded backend has at least one shard");
    this.count = count;
    this.backup = { kind: "shards", dir: backupDir(durability) };
    const cores = cpus().length;
    const hooks = journalTestHooks();
    const readies: Promise<{ keys: number; ms: number }>[] = [];
    const barrierTable = createBarrierTable();
    if (count > 1) {
      const slots = new BarrierSlots(barrierTable);
      const self = this;
      this.txnSlots = {
        acquire: () => slots.acquire(),
        release: (slot) => slots.release(slot),
        get firstId() {
          return self.firstTxnId;
        },
      };
    }
    // What each shard's journal says of its last multi-shard transaction, to decide the parts in doubt.
    const recovered: (Extract<WorkerMessage, { type: "recovered" }> | undefined)[] = new Array(count);
    let recoveredCount = 0;
    const onRecovered = (shard: number, m: Extract<WorkerMessage, { type: "recovered" }>): void => {
      recovered[shard] = m;
      if (++recoveredCount < count) return;
      const lastTxnOf = (s: number) => recovered[s]?.lastTxn ?? { id: 0, state: "applied" };
      for (const [s, r] of recovered.entries()) {
        this.firstTxnId = Math.max(this.firstTxnId, r!.lastTxn.id + 1);
        if (r!.inDoubt === null) continue;
        const done = txnCompleted(r!.inDoubt.id, r!.inDoubt.participants, lastTxnOf);
        // A part that is its shard's last record has no outcome of its own: it is decided here, by whether every
        // participant wrote its part. After a clean stop that is the usual case ("applied"); only a crash or a
        // failed write in the middle of the transaction leaves a part some participant lacks.
        events.onLog(
          done ? "info" : "warn",
          done
            ? "the last transaction on this shard's log was written by every participant: applied"
            : "a transaction cut short (a crash or a failed write before every participant wrote its part; never acknowledged): dropped",
          { shard: s, txn: r!.inDoubt.id, participants: r!.inDoubt.participants },
        );
        Atomics.store(this.links[s]!.control, 1, done ? 1 : 2);
        Atomics.notify(this.links[s]!.control, 1);
      }
    };
    for (let shard = 0; shard < count; shard++) {
      const requestRing = createRingBuffer(RING_BYTES);
      const notifyRing = createRingBuffer(RING_BYTES);
      const journal =
        durability === null
          ? null
          : {
              dir: durability.shardDir(shard),
              fsync: durability.fsync,
              snapshotLogBytes: durability.snapshotLogBytes,
              ...hooks,
            };
      const control = new SharedArrayBuffer(8);
      const worker = new Worker(new URL("../shard/worker.js", import.meta.url), {
        workerData: {
          shard,
          requestRing,
          notifyRing,
          pinCore: pin ? shard % cores : -1,
          journal,
          control,
          txnBarrier: barrierTable,
          watchHistoryBytes,
        } satisfies ShardWorkerData,
      });
      let readyFn!: (r: { keys: number; ms: number }) => void;
      let failFn!: (err: Error) => void;
      readies.push(
        new Promise((resolve, reject) => {
          readyFn = resolve;
          failFn = reject;
        }),
      );
      worker.on("message", (m: WorkerMessage) => {
        if (m.type === "recovered") return onRecovered(shard, m);
        if (m.type === "ready") {
          logRecovery(events, shard, m.truncatedTail, m.removed);
          return readyFn({ keys: m.keys, ms: m.ms });
        }
        if (m.type === "failed") return failFn(new StartError(`cannot start: shard ${shard}: ${m.message}`));
        if (m.type === "log") return events.onLog(m.level, m.message, { shard, ...m.detail });
        if (m.type === "closed") return link.closed?.();
        if (m.type !== "pin") return;
        if (m.ok) return events.onLog("info", m.detail, { shard });
        // Refused pinning is logged once per node, not once per worker: it is
        // one fact about the platform, and the node runs correctly unpinned.
        if (this.pinWarned) return;
        this.pinWarned = true;
        events.onLog("warn", `${m.detail}; shard workers run unpinned`, { shard });
      });
      worker.on("error", (err) => {
        events.onLog("error", "shard worker crashed", { shard, err });
        failFn(new StartError(`cannot start: shard ${shard} crashed: ${err.message}`));
      });
      worker.on("exit", (code) => {
        if (!this.started) return failFn(new StartError(`cannot start: shard ${shard} exited (code ${code})`));
        if (!this.closing) {
          // A dead shard would silently lose every key it owns: stop loudly.
          events.onLog("error", `shard worker ${shard} exited (code ${code}); the node cannot serve its keys`);
          process.exitCode = 70;
          process.kill(process.pid, "SIGTERM");
        }
      });
      const link: ShardLink = {
        worker,
        control: new Int32Array(control),
        closed: null,
        requests: new MessageWriter(new RingWriter(requestRing), RING_RECORD_MAX_BYTES),
        results: new MessageReader(new RingReader(notifyRing)),
        waiting: false,
      };
      this.links.push(link);
      this.listen(link);
    }
    this.readyAll = Promise.all(readies).then((all) => {
      this.started = true;
      return { keys: all.reduce((n, r) => n + r.keys, 0), ms: Math.max(...all.map((r) => r.ms)) };
    });
    this.readyAll.catch(() => {}); // observed by ready(); a failed start closes the backend
  }

  ready(): Promise<Recovered> {
    return this.readyAll;
  }

  send(shard: number, c: CommandFields): void {
    const link = this.links[shard]!;
    const bytes = commandBytes(c.key.length, c.value === null ? 0 : c.value.length);
    const at = link.requests.tryReserve(bytes);
    if (at >= 0) {
      encodeCommand(link.requests.ring.bytes, at, c);
      return;
    }
    const copy = new Uint8Array(bytes);
    encodeCommand(copy, 0, c);
    link.requests.enqueue(copy);
  }

  flush(): void {
    for (const link of this.links) {
      if (link.requests.ring.dirty) link.requests.ring.publish();
      if (link.requests.backlogCount > 0) this.pumpWhenRoom(link);
    }
  }

  /** Moves a shard's backlog into its request ring as the worker frees space (MessageWriter.pumpWhenRoom). */
  private pumpWhenRoom(link: ShardLink): void {
    link.requests.pumpWhenRoom(this.stopped, this.onRoom);
  }

  private readonly stopped = (): boolean => this.closing;
  private readonly onRoom = (): void => this.checkDrained();

  private checkDrained(): void {
    if (this.wasCongested && !this.congested()) {
      this.wasCongested = false;
      this.events.onDrain();
    }
  }

  congested(): boolean {
    for (const link of this.links) {
      const w = link.requests;
      if (w.backlogCount >= MAX_SHARD_BACKLOG_COUNT || w.backlogBytes >= MAX_SHARD_BACKLOG_BYTES) {
        this.wasCongested = true;
        return true;
      }
    }
    return false;
  }

  /** Parks a waitAsync on the shard's notify ring; drains it each time it fires. */
  private listen(link: ShardLink): void {
    const drainAndRearm = (): void => {
      link.waiting = false;
      link.results.ring.awake();
      if (this.closing) return;
      for (;;) {
        this.drain(link);
        const wait = link.results.ring.waitAsync();
        if (wait === null) continue; // more arrived meanwhile
        link.waiting = true;
        wait.then(drainAndRearm);
        return;
      }
    };
    drainAndRearm();
  }

  private drain(link: ShardLink): void {
    const reader = link.results;
    let delivered = 0;
    for (let m = reader.next(); m !== null; m = reader.next()) {
      assert(this.result.decode(m), "shard workers write well-formed results");
      this.events.onResult(this.result);
      reader.consume();
      delivered++;
    }
    reader.ring.release();
    // Results free request-ring space as a side effect: move backlogs on.
    if (link.requests.backlogCount > 0) this.pumpWhenRoom(link);
    if (delivered > 0) this.events.onBatchEnd();
    this.checkDrained();
  }

  async close(): Promise<void> {
    this.closing = true;
    // A clean stop: each worker writes and fsyncs what its journal holds (it looks at
    // the flag at least every sweep tick), then is terminated; 5 s at most.
    await Promise.all(
      this.links.map(async (l) => {
        if (this.started) {
          const closed = new Promise<void>((resolve) => {
            l.closed = resolve;
            setTimeout(resolve, 5000).unref();
          });
          Atomics.store(l.control, 0, 1);
          await closed;
        }
        await l.worker.terminate();
      }),
    );
  }
}
