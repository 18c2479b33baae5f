/**
 * The native protocol's requests: a decoded Cap'n Proto Operation in, shard
 * commands out, a Cap'n Proto Response back. A plain get or put skips the
 * Operation: native-hot.ts (decision 0316); who may run what: native-perms.ts.
 */
import type { Socket } from "node:net";
import { smallBytes } from "../small-bytes.js";
import { ErrorCode, errorName } from "../errors.js";
import { outcomeOf } from "../outcomes.js";
import { MAX_SCAN_COUNT, TRACE_MAX_IN_FLIGHT_PER_CONNECTION, WATCH_MAX_PER_CONNECTION } from "../limits.js";
import { Trace, traceClock } from "./trace.js";
import { SLOWLOG_KEY_BYTES } from "./slowlog.js";
import { Request_Which } from "../protocol/gen/piccolo.js";
import {
  decodeRequest,
  encodeError,
  encodeMulti,
  encodeOk,
  encodeWatchEvents,
  encodeBackupChunk,
  encodePong,
  encodeWhoAmI,
  encodeScan,
  encodeSingle,
  encodeStats,
  encodeSlowLog,
  encodeTrace,
  encodeTxn,
  OpKind,
  type Operation,
  type PartResult,
  type ShardStatsRow,
} from "../protocol/codec.js";
import { encodeClusterInfo } from "../protocol/cluster-info.js";
import {
  FLAG_KEEP_TTL,
  FLAG_STALE_READ,
  isWrite,
  Op,
  PERSISTENCE_FIELDS,
  type Result,
  readF64,
  unpackKeys,
} from "../shard/command.js";
import { FrameReader } from "../protocol/framing.js";
import { ALL_PERMS, mayRun, Perm, type User } from "../security/users.js";
import { nativeRefusal } from "./native-perms.js";
import { HotRequest } from "./native-hot.js";
import { NativeRun } from "./native-run.js";
import { HOT, readHot } from "../protocol/hot-codec.js";
import { decodeListRequest, encodeTxnPutsAndDeletes, encodeVersions } from "../protocol/list-codec.js";
import { Connection, type ConnectionHost } from "./connection.js";
import { type Dispatcher, InFlight, type RequestOwner } from "./dispatch.js";
import { sendTxn, type TxnGather, type TxnOutcome } from "./txn.js";
import { looksLikePosition, parsePosition, Watch, type WatchSink } from "./watch.js";
import { startBackup } from "./backup.js";
import { packageVersion } from "../version.js";

export interface NativeSession {
  /** Who the connection is (null: not authenticated yet). */
  readonly user: User | null;
  /** The node is stopping: requests are answered SHUTTING_DOWN. */
  readonly stopping: boolean;
  /** Checks an AUTH (asynchronously: requests after it wait), then answers it. */
  startAuth(req: NativeRequest): void;
  /** This connection's open watches, by their request's id. */
  readonly watches: Map<bigint, Watch>;
  /** A frame no request waits for (a watch's next frame). */
  push(frame: Uint8Array): void;
  readonly canTakeMore: boolean;
  /** The connection is closed or cut off: nothing more reaches its client. */
  readonly gone: boolean;
  log(level: "info" | "warn", message: string, detail?: object): void;
}

/** Scan cursors name the shard in their high part: shard * 2^32 + the shard's own cursor. */
export const SCAN_SHARD_SPAN = 2 ** 32;

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
  [OpKind.RESTORE_KEYS]: Op.RESTORE,
};

const EMPTY = new Uint8Array(0);
const NO_BYTES: Uint8Array[] = [];
const NO_NUMBERS: number[] = [];
/** A verdict-only transaction's answer: no op, no result. */
const NO_OPS: readonly number[] = [];

/**
 * A request's `stale` field becomes FLAG_STALE_READ on its read commands;
 * a write never carries it (the field is documented as ignored by writes).
 */
function staleFlag(op: Operation, cmdOp: Op): number {
  return op.stale && !isWrite(cmdOp) ? FLAG_STALE_READ : 0;
}

export class NativeRequest extends InFlight {
  private parts: PartResult[] | null = null;
  private scanShard = 0;
  /** txn: the gather its parts' results feed (src/io/txn.ts). */
  private gather: TxnGather | null = null;
  /** Traced: how its trace names the node (Dispatcher.traceNode). */
  traceNode = "node";

  override describe(): string[] {
    const key = this.op.keys[0];
    return key === undefined ? [kindName(this.op.kind)] : [kindName(this.op.kind), keyText(key)];
  }

  constructor(
    owner: RequestOwner,
    readonly op: Operation,
    /** When it was read (its TTLs count from then, even if it waited in the dispatch window). */
    readonly readMs: number,
  ) {
    super(owner);
  }

  /** Answers at once (ping, auth, invalid input) or sends the request's commands. */
  start(d: Dispatcher, nowMs: number, session: NativeSession): void {
    const op = this.op;
    if (op.errorCode !== 0) return this.finish(encodeError(op.id, op.errorCode, op.errorMessage));
    if (session.stopping)
      return this.finish(encodeError(op.id, ErrorCode.SHUTTING_DOWN, outcomeOf(ErrorCode.SHUTTING_DOWN).text));
    if (op.kind === OpKind.AUTH) return session.startAuth(this);
    const user = session.user;
    if (user === null || user.deleted)
      return this.finish(encodeError(op.id, ErrorCode.NOAUTH, "authentication required"));
    if (user.perms !== ALL_PERMS || user.keys !== null) {
      const refusal = nativeRefusal(user, op);
      if (refusal !== null) return this.finish(encodeError(op.id, ErrorCode.NOPERM, refusal));
    }
    const expireAtMs = op.expireAtMs > 0 ? op.expireAtMs : op.ttlMs > 0 ? nowMs + op.ttlMs : 0;
    switch (op.kind) {
      case OpKind.PING:
        return this.finish(encodePong(op.id));
      case OpKind.WHOAMI:
        return this.finish(
          encodeWhoAmI(op.id, {
            user: user.name,
            read: mayRun(user, Perm.READ),
            write: mayRun(user, Perm.WRITE),
            admin: mayRun(user, Perm.ADMIN),
            allKeys: user.keys === null,
          }),
        );
      case OpKind.SLOWLOG: {
        const log = d.slowlog;
        const out = encodeSlowLog(op.id, log.newest(op.count), log.length, log.slowerThanUs, log.maxLen);
        if (op.prefix) log.reset();
        return this.finish(out);
      }
      // Cluster requests: answered once the member's group hosts have (they may run on other threads).
      case OpKind.TRANSFER_LEADER:
      case OpKind.REPLACE_REPLICA:
      case OpKind.FORGET_MEMBER: {
        const done =
          op.kind === OpKind.TRANSFER_LEADER
            ? d.transferLeader(op.count, op.version)
            : op.kind === OpKind.REPLACE_REPLICA
              ? d.replaceReplica(op.count, op.cursor, op.version)
              : d.forgetMember(op.version);
        void done.then(
          (err) => this.finish(err === null ? encodeOk(op.id) : encodeError(op.id, ErrorCode.INVALID_ARGUMENT, err)),
          (err: unknown) => this.finish(encodeError(op.id, ErrorCode.INTERNAL, (err as Error).message)),
        );
        return;
      }
      case OpKind.CLUSTER_INFO: {
        void d.clusterInfo().then(
          (info) =>
            this.finish(
              info === null
                ? encodeError(op.id, ErrorCode.INVALID_ARGUMENT, "this node is not a cluster member")
                : encodeClusterInfo(op.id, info),
            ),
          (err: unknown) => this.finish(encodeError(op.id, ErrorCode.INTERNAL, (err as Error).message)),
        );
        return;
      }
      case OpKind.MGET:
      case OpKind.MPUT:
      case OpKind.MDEL:
      case OpKind.RESTORE_KEYS: {
        const k = op.keys.length;
        this.parts = new Array<PartResult>(k);
        const cmdOp = opOfKind[op.kind]!;
        // Hold the request open while sending: inline shards answer during
        // send(), and the request must not complete before its last part is out.
        this.remaining++;
        for (let i = 0; i < k; i++) {
          // Fields are set for every command: in inline mode a send runs at once.
          const c = d.begin(cmdOp, nowMs);
          c.flags = staleFlag(op, cmdOp);
          c.expireAtMs = expireAtMs;
          if (cmdOp === Op.PUT) c.value = op.values[i]!;
          if (cmdOp === Op.RESTORE) {
            c.value = op.values[i]!;
            c.arg0 = op.versions[i]!;
            c.expireAtMs = op.expiries[i]!;
          }
          d.sendKey(this, i, op.keys[i]!);
        }
        this.remaining--;
        if (this.remaining === 0) this.complete(d);
        return;
      }
      case OpKind.TXN:
        return this.startTxn(d, nowMs);
      case OpKind.WATCH:
        return this.startWatch(d, session);
      case OpKind.BACKUP:
        return this.startBackup(d, session);
      case OpKind.CANCEL_WATCH: {
        const w = session.watches.get(BigInt(op.version));
        if (w === undefined)
          return this.finish(encodeError(op.id, ErrorCode.INVALID_ARGUMENT, `no open watch has id ${op.version}`));
        w.cancel();
        session.watches.delete(BigInt(op.version));
        return this.finish(encodeOk(op.id));
      }
      case OpKind.STATS: {
        const n = d.shardCount;
        this.parts = new Array<PartResult>(n);
        this.remaining++; // held while sending, as above
        for (let s = 0; s < n; s++) {
          d.begin(Op.STATS, nowMs);
          d.send(s, this, s, EMPTY);
        }
        this.remaining--;
        if (this.remaining === 0) this.complete(d);
        return;
      }
      case OpKind.SCAN: {
        const shard = Math.floor(op.cursor / SCAN_SHARD_SPAN);
        if (shard >= d.shardCount)
          return this.finish(encodeError(op.id, ErrorCode.INVALID_ARGUMENT, "invalid scan cursor"));
        this.scanShard = shard;
        const c = d.begin(Op.SCAN, nowMs);
        c.flags = staleFlag(op, Op.SCAN);
        c.arg0 = op.cursor % SCAN_SHARD_SPAN;
        c.arg1 = Math.min(Math.max(op.count || 10, 1), MAX_SCAN_COUNT);
        return d.send(shard, this, 0, op.keys[0]!);
      }
      default: {
        const cmdOp = opOfKind[op.kind];
        if (cmdOp === undefined)
          return this.finish(encodeError(op.id, ErrorCode.UNKNOWN_OPERATION, `operation ${op.kind}`));
        const c = d.begin(cmdOp, nowMs);
        c.flags = (op.keepTtl ? FLAG_KEEP_TTL : 0) | staleFlag(op, cmdOp);
        // EXPIRE with neither ttlMs nor expireAtMs: expire now.
        c.expireAtMs = cmdOp === Op.EXPIRE && expireAtMs === 0 ? nowMs : expireAtMs;
        c.arg0 = op.version;
        if (op.values.length > 0) c.value = op.values[0]!;
        return d.sendKey(this, 0, op.keys[0]!);
      }
    }
  }

  /**
   * A watch (docs/watch.md): this request's answer is the stream's first
   * frame (created); every later frame is pushed with the same id, after
   * the answers queued before it. The watch asks its shards for more only
   * while the connection is under its soft output limit.
   */
  private startWatch(d: Dispatcher, session: NativeSession): void {
    const op = this.op;
    if (session.watches.has(op.id))
      return this.finish(encodeError(op.id, ErrorCode.INVALID_ARGUMENT, `a watch with id ${op.id} is already open`));
    if (session.watches.size >= WATCH_MAX_PER_CONNECTION)
      return this.finish(
        encodeError(
          op.id,
          ErrorCode.INVALID_ARGUMENT,
          `${WATCH_MAX_PER_CONNECTION} watches are open on this connection`,
        ),
      );
    const run = d.watchRun;
    let from: number[] | null = null;
    if (op.from !== "") {
      if (!looksLikePosition(op.from))
        return this.finish(encodeError(op.id, ErrorCode.INVALID_ARGUMENT, `from: "${op.from}" is not a position`));
      from = parsePosition(op.from, run, d.shardCount);
      if (from === null)
        return this.finish(
          encodeWatchEvents(
            op.id,
            "",
            [],
            true,
            ErrorCode.COMPACTED,
            "the position is from another run of the node (or another layout): read the keys again, then watch from now",
          ),
        );
    }
    let created = false;
    const id = op.id;
    const self = this;
    const sink: WatchSink = {
      get ready() {
        return session.canTakeMore;
      },
      created(position) {
        if (created) return;
        created = true;
        self.finish(encodeWatchEvents(id, position, [], true));
      },
      changes(changes, position, shard) {
        session.push(encodeWatchEvents(id, position, changes, false, 0, "", shard));
      },
      ended(code, message, position) {
        session.watches.delete(id);
        if (!created) {
          created = true;
          return self.finish(encodeWatchEvents(id, position, [], true, code, message));
        }
        session.push(encodeWatchEvents(id, position, [], false, code, message));
      },
    };
    const w = new Watch(this.owner, d, op.keys[0]!, !op.prefix, from, sink);
    session.watches.set(id, w);
    w.start();
  }

  /**
   * A backup stream (src/io/backup.ts): this request's answer is the
   * stream's first frame; later frames are pushed with the same id, only
   * while the connection is under its soft output limit.
   */
  private startBackup(d: Dispatcher, session: NativeSession): void {
    const id = this.op.id;
    let first = true;
    const frame = (f: Uint8Array): void => {
      if (first) {
        first = false;
        this.finish(f);
      } else session.push(f);
    };
    startBackup(
      d,
      d.backupSource,
      {
        get ready() {
          return session.canTakeMore;
        },
        get gone() {
          return session.gone || session.stopping;
        },
        send: (data, last) => frame(encodeBackupChunk(id, data, last)),
        fail: (code, message) => frame(encodeError(id, code, message)),
      },
      packageVersion(),
      (level, message, detail) => session.log(level, message, detail),
    );
  }

  /**
   * Sends the transaction's parts; its answer comes from the gather's merged
   * outcome. A put's relative TTL counts from the request's start, as a
   * plain put's does (an absolute expireAtMs wins, as there).
   */
  private startTxn(d: Dispatcher, nowMs: number): void {
    const op = this.op;
    const t = op.txn!;
    for (const [ops, ttls] of [
      [t.success, t.successTtlMs],
      [t.failure, t.failureTtlMs],
    ] as const)
      for (const [i, o] of ops.entries()) if (o.expireAtMs === 0 && ttls[i]! > 0) o.expireAtMs = nowMs + ttls[i]!;
    const g = sendTxn(
      d,
      this,
      { compares: t.compares, success: t.success, failure: t.failure, verdictOnly: t.verdictOnly },
      nowMs,
      (o) => this.txnDone(o),
      (gather) => {
        this.gather = gather;
      },
    );
    if ("code" in g) return this.finish(encodeError(op.id, g.code, g.message));
  }

  private txnDone(o: TxnOutcome): void {
    const op = this.op;
    if (this.owner.gone) return this.finish(EMPTY);
    if (o.status !== ErrorCode.OK) return this.finish(encodeError(op.id, o.status, outcomeOf(o.status).text));
    // Only the verdict asked for (Txn.verdictOnly): the shards sent no op's result, and the answer holds none.
    if (op.txn!.verdictOnly) return this.finish(encodeTxnPutsAndDeletes(op.id, o.succeeded, NO_OPS, o.results)!);
    const branch = o.succeeded ? op.txn!.success : op.txn!.failure;
    const name = o.succeeded ? "success" : "failure";
    for (let i = 0; i < branch.length; i++) {
      const r = o.results[i];
      if (r === undefined)
        return this.finish(encodeError(op.id, ErrorCode.INTERNAL, `no result for ${name} op ${i} of the transaction`));
      // Get, put and delete have no failure of their own: a status here is the node's, and the branch ran
      // (an earlier op's write may stand): the outcome as a whole is unknown.
      if (r.status !== ErrorCode.OK)
        return this.finish(
          encodeError(
            op.id,
            ErrorCode.TIMEOUT,
            `partly applied: ${name} op ${i} of the transaction failed: ${errorName(r.status)}: ${outcomeOf(r.status).text}`,
          ),
        );
    }
    const ops = branch.map((b) => b.op);
    // Puts and deletes laid out by hand (list-codec.ts); a branch with a get through capnp-es.
    this.finish(
      encodeTxnPutsAndDeletes(op.id, o.succeeded, ops, o.results) ?? encodeTxn(op.id, o.succeeded, ops, o.results),
    );
  }

  /**
   * The operation's keys and values are views into the request's frame: let
   * the frame go once the answer is made (it may wait in the queue behind a
   * slower answer; the frame need not wait with it).
   */
  override finish(out: Uint8Array): void {
    const t = this.trace;
    // A traced request's timeline goes first, as a frame of its own with the same id (decision 0320).
    if (t !== null && out.length > 0) out = withTrace(this.op.id, t, this.traceNode, out);
    super.finish(out);
    this.op.keys = NO_BYTES;
    this.op.values = NO_BYTES;
    this.op.versions = NO_NUMBERS;
    this.op.expiries = NO_NUMBERS;
    this.op.txn = null;
  }

  onResult(part: number, r: Result, d: Dispatcher): void {
    const op = this.op;
    // A transaction's parts always feed its gather, owner gone or not: the gather frees its barrier slot.
    if (this.gather !== null) return this.gather.onPart(part, r.status, r.flag, r.value, d);
    // Nobody reads the answer (dispatch.ts, RequestOwner.gone); a native request has no later step.
    if (this.owner.gone) {
      if (this.remaining === 0 && this.parts === null) this.finish(EMPTY);
      else if (this.remaining === 0) this.complete(d);
      return;
    }
    if (this.parts === null) {
      // A failure (src/outcomes.ts) is an error whatever the operation: a scan that failed is not "no keys".
      if (r.status !== ErrorCode.OK && op.kind === OpKind.SCAN)
        return this.finish(encodeError(op.id, r.status, outcomeOf(r.status).text));
      if (op.kind === OpKind.SCAN) {
        const shardDone = r.num === 0;
        const next = shardDone
          ? this.scanShard + 1 < d.shardCount
            ? (this.scanShard + 1) * SCAN_SHARD_SPAN
            : 0
          : this.scanShard * SCAN_SHARD_SPAN + r.num;
        return this.finish(encodeScan(op.id, next, unpackKeys(r.value ?? EMPTY)));
      }
      return this.finish(encodeSingle(op.id, op.kind, r));
    }
    this.parts[part] = copyResult(r);
    if (this.remaining === 0) this.complete(d);
  }

  private complete(d: Dispatcher): void {
    if (this.owner.gone) return this.finish(EMPTY);
    const op = this.op;
    const parts = this.parts!;
    const failed = parts.findIndex((p) => p.status !== ErrorCode.OK);
    if (failed >= 0) {
      const status = parts[failed]!.status;
      // Some keys of an mput/mdel written, another failed: the request as a whole is neither done nor
      // undone, which the caller must hear as "outcome unknown", whatever the failure was.
      const partly =
        op.kind !== OpKind.MGET && op.kind !== OpKind.STATS && parts.some((p) => p.status === ErrorCode.OK);
      if (partly)
        return this.finish(
          encodeError(
            op.id,
            ErrorCode.TIMEOUT,
            `partly applied: ${parts.filter((p) => p.status === ErrorCode.OK).length} of ${parts.length} keys written; key ${failed} failed: ${errorName(status)}: ${outcomeOf(status).text}`,
          ),
        );
      return this.finish(encodeError(op.id, status, outcomeOf(status).text));
    }
    if (op.kind === OpKind.STATS) {
      const rows = parts.map((p, shard) => statsRow(shard, p.value!));
      return this.finish(encodeStats(op.id, rows, Date.now() - d.startedMs, d.connections));
    }
    // mput's versions laid out by hand (list-codec.ts), restoreKeys' too: the same answer.
    if (op.kind === OpKind.MPUT || op.kind === OpKind.RESTORE_KEYS) return this.finish(encodeVersions(op.id, parts));
    this.finish(encodeMulti(op.id, op.kind, parts));
  }
}

const KIND_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(Request_Which).map(([name, code]) => [code, name.toLowerCase()]),
);

/** A request kind's name, for the slow log. */
export function kindName(kind: number): string {
  return KIND_NAMES[kind] ?? `kind ${kind}`;
}

/** A key as the slow log shows it: its first SLOWLOG_KEY_BYTES as text. */
export function keyText(key: Uint8Array): string {
  const shown = new TextDecoder().decode(key.subarray(0, SLOWLOG_KEY_BYTES));
  return key.length > SLOWLOG_KEY_BYTES ? `${shown}... (${key.length} bytes)` : shown;
}

/** The trace frame (its last span: the answer laid out) followed by the answer, in one buffer. */
function withTrace(id: bigint, t: Trace, node: string, out: Uint8Array): Uint8Array {
  t.add("encoded", "io", t.lastResultAt > 0 ? t.lastResultAt : t.parsedAt, traceClock(), "the answer laid out");
  const frame = encodeTrace(id, { spans: t.ordered(), dropped: t.dropped, node });
  const both = new Uint8Array(frame.length + out.length);
  both.set(frame, 0);
  both.set(out, frame.length);
  return both;
}

/** A result that outlives the shard's view of it (the value is copied, unless `value` is false). */
export function copyResult(r: Result, value = true): PartResult {
  return {
    status: r.status,
    flag: r.flag,
    version: r.version,
    expireAtMs: r.expireAtMs,
    num: r.num,
    value: r.value === null || !value ? null : r.value.slice(),
  };
}

/**
 * A socket speaking the native protocol: Cap'n Proto frames in and out.
 *
 * A frame with a valid segment table but garbage inside is answered with
 * MALFORMED_FRAME and the connection goes on: the table told us where the
 * next frame starts. A garbage or oversized table cannot be stepped over:
 * a final error, then close.
 */
export class NativeConnection extends Connection implements NativeSession {
  private readonly framer: FrameReader;
  readonly watches = new Map<bigint, Watch>();
  /** goAway() was sent: see mayStillSend. */
  private toldToGoAway = false;

  constructor(socket: Socket, host: ConnectionHost) {
    super(socket, host);
    this.framer = new FrameReader(host.maxFrameBytes, smallBytes);
    this.framer.hot = this.takeHot;
    if (host.auth.refuses(socket.remoteAddress)) {
      host.limitHit("protected-mode", "refused a client from another machine: protected mode", {
        remote: socket.remoteAddress,
      });
      this.fatal(encodeError(0n, ErrorCode.DENIED, outcomeOf(ErrorCode.DENIED).text));
    }
  }

  get stopping(): boolean {
    return this.host.stopping;
  }

  log(level: "info" | "warn", message: string, detail?: object): void {
    this.host.log(level, message, detail);
  }

  /** An error with id 0 and SHUTTING_DOWN: the client opens a new connection for what it sends next (client.ts). */
  override goAway(): void {
    this.toldToGoAway = true;
    this.push(
      encodeError(0n, ErrorCode.SHUTTING_DOWN, "this member is stopping: send nothing more on this connection"),
    );
  }

  /** Told to go away, and the client has not ended its side yet (client.ts ends it on the "go away"). */
  override get mayStillSend(): boolean {
    return this.toldToGoAway && !this.gone && !this.socket.readableEnded;
  }

  startAuth(req: NativeRequest): void {
    const op = req.op;
    const name = op.user === "" ? "default" : op.user;
    const users = this.host.auth.users;
    if (name === "default" && !users.authRequired)
      return req.finish(
        encodeError(op.id, ErrorCode.INVALID_ARGUMENT, "no password is configured for the default user"),
      );
    // The requests after it wait for the answer: whether they may run depends on it.
    this.barrierOn(req);
    void this.host.auth.check(name, Buffer.from(op.password), this.socket.remoteAddress, "native").then((u) => {
      if (u === null)
        return req.finish(encodeError(op.id, ErrorCode.NOAUTH, "invalid username-password pair or user is disabled"));
      this.user = u;
      req.finish(encodeOk(op.id));
    });
  }

  // A lent chunk needs nothing more here: the frame reader copies every frame out of it but those a run
  // takes whole while it is read (src/protocol/framing.ts, src/io/native-run.ts).
  protected onBytes(chunk: Uint8Array, nowMs: number): void {
    const d = this.host.dispatcher;
    const maxValueBytes = this.host.maxValueBytes;
    this.framer.pushViews(chunk, (frame) => {
      // Queued after a run (native-run.ts): the run takes no more, so answers keep their order.
      this.endRun();
      // A frame is never reused (a small one is carved from a shared block: src/small-bytes.ts), so a request held past the dispatch window keeps it as it is.
      // Get and put by hand when they are plain and valid (native-hot.ts); mput and txn read by hand into an
      // Operation (list-codec.ts); everything else, and anything unusual or invalid, through decodeRequest.
      let req: NativeRequest | HotRequest;
      if (readHot(frame, maxValueBytes)) req = new HotRequest(this, HOT, frame, nowMs);
      else {
        req = new NativeRequest(
          this,
          decodeListRequest(frame, maxValueBytes) ?? decodeRequest(frame, maxValueBytes),
          nowMs,
        );
        if (req.op.trace) this.startTrace(req, frame.length);
      }
      req.receivedAt = this.chunkAt;
      const now = this.mayStart();
      this.enqueue(req);
      if (now) req.start(d, nowMs, this);
      else this.hold(req);
    });
    const error = this.framer.error;
    if (error !== null) {
      const detail = { code: error.code, message: error.message };
      if (error.code === "FRAME_TOO_LARGE")
        this.host.limitHit("frame-size", "closing a connection over the frame size limit", detail);
      else this.host.log("info", "closing connection on a bad frame", detail);
      const code = error.code === "FRAME_TOO_LARGE" ? ErrorCode.FRAME_TOO_LARGE : ErrorCode.MALFORMED_FRAME;
      this.fatal(encodeError(0n, code, error.message));
    }
  }

  /**
   * The frame reader offers a whole frame as it lies in the chunk: taken
   * into the connection's run when it is a hot request that needs none of
   * the general path's checks (src/io/native-run.ts lists them), else left
   * to be copied out and read as a request of its own.
   */
  private readonly takeHot = (frame: Uint8Array): boolean => {
    const user = this.user;
    const d = this.host.dispatcher;
    if (
      user === null ||
      user.deleted ||
      user.perms !== ALL_PERMS ||
      user.keys !== null ||
      this.stopping ||
      !d.inOrder ||
      !this.mayStart() ||
      !readHot(frame, this.host.maxValueBytes)
    )
      return false;
    const run = (this.joinableRun() as NativeRun | null) ?? this.startRun(new NativeRun(this));
    run.send(d, HOT, frame, this.readMs);
    return true;
  };

  /**
   * A request asked for its timeline (docs/tracing.md): its trace starts at
   * the receipt of the bytes it came in. Refused on the streams, whose
   * answers never end, and over TRACE_MAX_IN_FLIGHT_PER_CONNECTION.
   */
  private startTrace(req: NativeRequest, bytes: number): void {
    const op = req.op;
    if (op.errorCode !== 0) return;
    if (op.kind === OpKind.WATCH || op.kind === OpKind.BACKUP) {
      op.errorCode = ErrorCode.INVALID_ARGUMENT;
      op.errorMessage = `${op.kind === OpKind.WATCH ? "a watch" : "a backup"} cannot be traced: its answer is a stream`;
      return;
    }
    if (this.tracedInFlight >= TRACE_MAX_IN_FLIGHT_PER_CONNECTION) {
      op.errorCode = ErrorCode.INVALID_ARGUMENT;
      op.errorMessage = `too many traced requests in flight on this connection (at most ${TRACE_MAX_IN_FLIGHT_PER_CONNECTION}): wait for their answers`;
      return;
    }
    const t = new Trace(this.chunkAt);
    t.parsedAt = traceClock();
    t.add("received", "io", t.t0, t.parsedAt, `native request, ${bytes} bytes, read and decoded`);
    req.trace = t;
    req.traceNode = this.host.dispatcher.traceNode;
    this.tracedInFlight++;
  }

  protected startHeld(req: InFlight): void {
    const r = req as NativeRequest | HotRequest;
    r.start(this.host.dispatcher, r.readMs, this);
  }

  protected get partial(): boolean {
    return this.framer.partial;
  }

  protected get portName(): string {
    return "native";
  }

  protected truncatedAnswer(): Uint8Array {
    return encodeError(0n, ErrorCode.MALFORMED_FRAME, "truncated frame: the stream ended inside a frame");
  }
}

/**
 * A shard's STATS answer: five f64s from the core, then, on a durable
 * node, the journal's figures in PERSISTENCE_FIELDS order (src/journal/execute.ts).
 */
export function statsRow(shard: number, b: Uint8Array): ShardStatsRow {
  const row: ShardStatsRow = {
    shard,
    keys: readF64(b, 0),
    memoryBytes: readF64(b, 8),
    reads: readF64(b, 16),
    writes: readF64(b, 24),
    expired: readF64(b, 32),
  };
  if (b.length >= STATS_BYTES + PERSISTENCE_FIELDS.length * 8) {
    const f = (name: (typeof PERSISTENCE_FIELDS)[number]) =>
      readF64(b, STATS_BYTES + PERSISTENCE_FIELDS.indexOf(name) * 8);
    row.persistence = {
      logBytes: f("logBytes"),
      snapshotBytes: f("snapshotBytes"),
      lastSaveMs: f("lastSaveMs"),
      fsyncs: f("fsyncs"),
      fsyncTotalMs: f("fsyncTotalMs"),
      fsyncMaxMs: f("fsyncMaxMs"),
      refusingWrites: f("failed") === 1,
    };
  }
  return row;
}

/** Bytes of the core's own STATS answer (five f64s). */
const STATS_BYTES = 40;
