/**
 * The router: commands out to shards, results back to the requests that
 * wait for them. Protocol-neutral: the native protocol (native.ts) and the
 * Redis protocol (src/resp) both build their requests on it.
 *
 * A request sends one command per key (a get: one; an mget of 50 keys: 50,
 * to as many shards as the keys hash to). Every command carries a tag, an
 * index into the in-flight table below, so a result coming back from any
 * shard finds its request and its part in O(1). A request may send more
 * commands from its result handler (multi-step commands: KEYS walks every
 * shard, RENAME reads then writes); it is complete when it calls finish().
 * The connection writes complete requests in arrival order (connection.ts),
 * which keeps a pipelining client's answers in order even when its keys live
 * on different shards and the shards answer out of order.
 */
import { assert } from "../assert.js";
import { type CommandFields, Op, type Result } from "../shard/command.js";
import { SlowLog } from "./slowlog.js";
import { type Trace, traceClock } from "./trace.js";
import type { BackupSource } from "./backup.js";
import { shardOf } from "./route.js";
import type { ClusterInfo, ShardBackend } from "./shards.js";

/** Whoever is owed the answer: a connection, in practice. */
export interface RequestOwner {
  /**
   * A request of this owner is complete (its `out` is set, `answerBytes`
   * long); its answer holds `bytes` more than was charged for it while it was
   * gathered (may be negative). `commands`: how many commands the request
   * answers (1, but for a run of a Redis connection's hot commands:
   * src/resp/hot.ts).
   */
  requestDone(bytes: number, answerBytes: number, commands: number): void;
  /** A request of this owner now holds `bytes` more of its answer (a result's value arrived). */
  charge(bytes: number): void;
  /**
   * The owner will never write an answer again (closed, or cut off over a
   * limit). Its requests keep no values from here on and take no further
   * read-only steps: an MGET of a thousand 1 MiB values from a client cut
   * at its output limit would otherwise still copy, and then encode, every
   * value that comes back. A step after a write was applied is still taken
   * (RENAME's second half, MSETNX's undo): a client leaving must not leave
   * a command half done.
   */
  readonly gone: boolean;
  /** A traced request of this owner has its answer (its trace is complete). */
  traceEnded?(req: InFlight): void;
  /** A request with a receipt time has its answer: the slow log looks at it (src/io/slowlog.ts). */
  timed?(req: InFlight): void;
}

/** One request in flight; each protocol subclasses it. */
export abstract class InFlight {
  /** The encoded answer, once complete. */
  out: Uint8Array | null = null;
  /** Close the connection once this answer is written (QUIT, fatal errors). */
  closeAfter = false;
  /** Commands sent and not yet answered. */
  remaining = 0;
  /** Bytes of answer charged to the owner so far: the values of the results received, then `out`. */
  charged = 0;
  /** Called once the answer is made (a barrier's release; an EXEC waiting for its WATCH's reads). */
  afterFinish: (() => void) | null = null;
  /** The client commands this answers: 1, but for a run of hot Redis commands (src/resp/hot.ts). */
  commands = 1;
  /**
   * An open-ended read (a watch: src/io/watch.ts): its shard reads may stay
   * parked until something changes, so a stopping node does not wait for them.
   */
  get openEnded(): boolean {
    return false;
  }
  /** The request's timeline while it is traced (docs/tracing.md); null, the usual case, costs one test per hop. */
  trace: Trace | null = null;
  /** When its bytes were received (traceClock), for the slow log; 0: not timed (an answer no request asked for). */
  receivedAt = 0;

  /** What the request was, for the slow log: its command and first key (read while they are still valid). */
  describe(): string[] {
    return this.trace !== null && this.trace.label !== "" ? this.trace.label.split(" ") : ["?"];
  }

  constructor(readonly owner: RequestOwner) {}

  /** A shard answered part `part`. `r.value` is valid only during the call. */
  abstract onResult(part: number, r: Result, d: Dispatcher): void;

  finish(out: Uint8Array): void {
    assert(this.out === null, "a request is finished once");
    if (this.trace !== null) this.owner.traceEnded?.(this);
    if (this.receivedAt !== 0) this.owner.timed?.(this);
    this.out = out;
    const bytes = out.length - this.charged;
    this.charged = out.length;
    this.owner.requestDone(bytes, out.length, this.commands);
    const f = this.afterFinish;
    if (f !== null) {
      this.afterFinish = null;
      f();
    }
  }
}

/** What a journal commit did, by the trailer's fsync code (src/shard/command.ts). */
const FSYNC_DETAIL: Record<number, string> = {
  1: "write + fsync (--fsync always), one for the whole batch",
  2: "write; fsync within a second (--fsync everysec)",
  3: "write; the OS flushes it (--fsync no)",
};

const OP_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(Op).map(([name, code]) => [code, name.toLowerCase()]),
);

/** A shard command's name, for traces. */
export function opName(op: number): string {
  return OP_NAMES[op] ?? `op ${op}`;
}

export class Dispatcher {
  backend!: ShardBackend;
  /** How traces name this node: "node", or "member N" in a cluster. */
  get traceNode(): string {
    return this.backend.traceNode ?? "node";
  }
  /** Called after commands were sent from a result handler (they need a ring publish). */
  onSentLater: () => void = () => {};
  readonly startedMs = Date.now();
  /** The node's slow log (src/io/slowlog.ts), fed by every connection. */
  readonly slowlog = new SlowLog();
  connections = 0;
  /** Backups streaming now (src/io/backup.ts; at most BACKUP_MAX_RUNNING). */
  backupsRunning = 0;
  /** In-flight table: tag -> request and part. Freed tags are reused (free list). */
  private reqs: (InFlight | null)[] = [];
  private partOf: Int32Array = new Int32Array(1024);
  private free: number[] = [];
  private delivering = false;
  /**
   * The command being built. Callers set its fields, then call send(); it is
   * reused for every command, so sending allocates nothing.
   */
  readonly cmd: CommandFields = {
    op: Op.GET,
    flags: 0,
    tag: 0,
    nowMs: 0,
    expireAtMs: 0,
    arg0: 0,
    arg1: 0,
    key: new Uint8Array(0),
    value: null,
    traced: false,
    txn: null,
  };

  /** The next multi-shard transaction's id (ids only grow, across restarts too: the backend seeds it). */
  private nextTxnId = 1;
  /** Multi-shard transactions waiting for a barrier slot, in arrival order. */
  private readonly txnQueue: ((slot: number, id: number) => void)[] = [];

  /** The "run" a watch position belongs to (src/io/watch.ts). */
  get watchRun(): string {
    return this.backend.watchRun ?? this.startedMs.toString(36);
  }

  /** Whether shards park watch reads that find nothing new (else a watch polls). */
  get watchParks(): boolean {
    return this.backend.watchParks ?? true;
  }

  /** How this node is backed up (src/io/backup.ts). */
  get backupSource(): BackupSource {
    return this.backend.backup ?? { kind: "partitions" };
  }

  /** Whether a transaction may span shards (a single node's workers; not a cluster's partitions). */
  get crossShardTxns(): boolean {
    return this.backend.txnSlots !== undefined;
  }

  /** Runs `send` with a free barrier slot and a fresh transaction id, now or once a slot frees (FIFO). */
  withTxnSlot(send: (slot: number, id: number) => void): void {
    const slots = this.backend.txnSlots!;
    if (this.txnQueue.length === 0) {
      const slot = slots.acquire();
      if (slot >= 0) return send(slot, this.takeTxnId());
    }
    this.txnQueue.push(send);
  }

  releaseTxnSlot(slot: number): void {
    const slots = this.backend.txnSlots!;
    slots.release(slot);
    const next = this.txnQueue.shift();
    if (next !== undefined) next(slots.acquire(), this.takeTxnId());
  }

  private takeTxnId(): number {
    const floor = this.backend.txnSlots!.firstId;
    if (this.nextTxnId < floor) this.nextTxnId = floor;
    return this.nextTxnId++;
  }

  /** Commands whose results are awaited from shards. */
  get inFlight(): number {
    return this.reqs.length - this.free.length;
  }

  /**
   * Whether a command is awaited from the shards for a request that will be
   * answered (a stop waits for these), not counting a watch's reads, which
   * may stay parked until something changes (InFlight.openEnded). Walks the
   * in-flight table: for a stop's waits, not for the hot path.
   */
  get awaitingAnswers(): boolean {
    if (this.inFlight === 0) return false;
    for (const r of this.reqs) if (r !== null && !r.openEnded) return true;
    return false;
  }

  /** Whether a transaction goes to the shard as the caller built it (ShardBackend.runsTxnInPlace). */
  get txnInPlace(): boolean {
    return this.backend.runsTxnInPlace === true;
  }

  /** Whether results come back in the order commands were sent (ShardBackend.inOrder). */
  get inOrder(): boolean {
    return this.backend.inOrder === true;
  }

  get shardCount(): number {
    return this.backend.count;
  }

  /** Forgets a member for good (src/cluster/admin.ts, forgetMember); an error message, or null. */
  async forgetMember(member: number): Promise<string | null> {
    if (this.backend.forgetMember === undefined) return "this node is not a cluster member";
    return this.backend.forgetMember(member);
  }

  /** Takes the next step of moving a partition's replica; an error message, or null when it was asked. */
  async replaceReplica(partition: number, remove: number, add: number): Promise<string | null> {
    if (this.backend.replaceReplica === undefined) return "this node is not a cluster member";
    return this.backend.replaceReplica(partition, remove, add);
  }

  async transferLeader(partition: number, member: number): Promise<string | null> {
    if (this.backend.transferLeader === undefined) return "this node is not a cluster member";
    return this.backend.transferLeader(partition, member);
  }

  /** The cluster as this member sees it; null on a single node. */
  async clusterInfo(): Promise<ClusterInfo | null> {
    return (await this.backend.clusterInfo?.()) ?? null;
  }

  shardOf(key: Uint8Array): number {
    return shardOf(key, this.backend.count);
  }

  /** Resets the reusable command's fields for a new command at time `nowMs`. */
  begin(op: Op, nowMs: number): CommandFields {
    const c = this.cmd;
    c.op = op;
    c.flags = 0;
    c.nowMs = nowMs;
    c.expireAtMs = 0;
    c.arg0 = 0;
    c.arg1 = 0;
    c.value = null;
    c.traced = false;
    c.txn = null;
    return c;
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

  /** Sends `cmd` (as the caller filled it) with `key` to `shard`, as part `part` of `req`. */
  send(shard: number, req: InFlight, part: number, key: Uint8Array): void {
    const c = this.cmd;
    c.tag = this.tagFor(req, part);
    c.key = key;
    req.remaining++;
    if (req.trace !== null) this.traceSend(req.trace, c, shard);
    this.backend.send(shard, c);
    if (this.delivering) this.onSentLater();
  }

  /** A traced request's command goes out: the routing decision is a span, the send time kept for the next. */
  private traceSend(t: Trace, c: CommandFields, shard: number): void {
    c.traced = true;
    const now = traceClock();
    const where = this.backend.traceWhere?.(shard) ?? `shard ${shard}`;
    const from = t.sent.size > 0 || t.lastResultAt > 0 ? now : t.parsedAt;
    t.add("routed", "io", from, now, `${opName(c.op)} to ${where}`);
    t.sent.set(c.tag, { at: now, shard });
  }

  /**
   * A traced command's result is back on the IO thread: its worker's stamps
   * (src/shard/command.ts, the result's trailer) become the ring, executed,
   * journal and notify spans; a backend without a ring between (inline
   * shards, a cluster's groups) gives what it knows.
   */
  private traceResult(t: Trace, r: Result): void {
    const now = traceClock();
    const s = t.sent.get(r.tag);
    t.lastResultAt = now;
    if (s === undefined) return;
    t.sent.delete(r.tag);
    const where = this.backend.traceWhere?.(s.shard) ?? `shard ${s.shard}`;
    if (!r.traced) {
      if (this.backend.traceResult !== undefined) this.backend.traceResult(t, r, s.at, now, where);
      else t.add("executed", where, s.at, now);
      return;
    }
    t.add("ring", where, s.at, r.tPicked, "waiting in the shard's request ring");
    t.add("executed", where, r.tPicked, r.tExecuted, "the command run on the shard's map");
    let last = r.tExecuted;
    if (r.tCommitEnd > 0) {
      t.add("journal", where, r.tCommitStart, r.tCommitEnd, FSYNC_DETAIL[r.fsync] ?? "");
      last = r.tCommitEnd;
    }
    t.add("notify", where, last, now, "the answer in the notify ring until the IO thread took it");
  }

  /** Sends `cmd` with `key` to the key's shard. */
  sendKey(req: InFlight, part: number, key: Uint8Array): void {
    this.send(this.shardOf(key), req, part, key);
  }

  /** A shard's answer to one command. */
  onResult(r: Result): void {
    const tag = r.tag;
    const req = this.reqs[tag];
    assert(req !== null && req !== undefined, "every result answers a command in flight");
    const part = this.partOf[tag]!;
    this.reqs[tag] = null;
    this.free.push(tag);
    req.remaining--;
    assert(req.remaining >= 0, "a request receives each of its parts once");
    // What the answer will hold, counted as it arrives (the owner's output limit;
    // connection.ts): a multi-key answer gathers its values before it is complete.
    // Nothing is gathered for an owner that is gone (the requests see owner.gone).
    const v = r.value;
    if (v !== null && req.out === null && !req.owner.gone) {
      req.charged += v.length;
      req.owner.charge(v.length);
    }
    if (req.trace !== null) this.traceResult(req.trace, r);
    const was = this.delivering;
    this.delivering = true;
    try {
      req.onResult(part, r, this);
    } finally {
      this.delivering = was;
    }
  }
}
