/**
 * One Redis command in flight, and the small vocabulary command handlers use
 * to talk to shards: one() for a single command, many() for a fan-out whose
 * results are gathered in order, everyShard() for node-wide commands.
 * A handler may chain steps: the callback of one() can call one() again.
 *
 * Failures never reach a handler. A handler sees only OK and the data
 * outcomes of its shard op (isDataOutcome: SET NX's "already exists", and
 * so on), which it gives their Redis shapes. Any other status (a deadline,
 * no leader, shutting down: src/outcomes.ts) is answered here as an error,
 * once for the whole command, so no handler can turn a failed read into
 * nil or a failed write into OK. A write whose outcome is unknown answers
 * -UNCERTAIN, and so does a command that fails after one of its writes was
 * applied (a fan-out's other parts, an earlier step of RENAME).
 */
import type { Authenticator } from "../io/auth.js";
import type { User } from "../security/users.js";
import { ErrorCode } from "../errors.js";
import { MAX_BATCH_KEYS, MAX_KEY_BYTES } from "../limits.js";
import { type Dispatcher, InFlight, type RequestOwner } from "../io/dispatch.js";
import { copyResult } from "../io/native.js";
import { checkTxn, sendTxn, type TxnGather, type TxnOutcome, type TxnSpec } from "../io/txn.js";
import type { PartResult } from "../protocol/codec.js";
import { respErrorText } from "../outcomes.js";
import { type CommandFields, FLAG_STALE_READ, isDataOutcome, isWrite, type Op, type Result } from "../shard/command.js";
import type { PubSubHub } from "./pubsub.js";
import type { TraceOut } from "../io/trace.js";
import * as reply from "./reply.js";
import { argsAfter } from "./parser.js";
import { SLOWLOG_MAX_ARGS, slowArgs } from "../io/slowlog.js";
import { redacted } from "./slow-args.js";

/** MULTI's queue (src/resp/multi.ts): the commands queued since MULTI, copied. */
export interface MultiState {
  queued: Uint8Array[][];
  /** Bytes of the queued commands' arguments (bounded by TXN_MAX_BYTES). */
  bytes: number;
  /** A command was refused while queueing: EXEC answers EXECABORT. */
  dirty: boolean;
}

/** WATCH's keys and the versions they had (-1: the read failed, so EXEC will not run). */
export interface WatchState {
  keys: Map<string, { key: Uint8Array; version: number }>;
  /** WATCH reads not yet answered: EXEC waits for them. */
  pending: number;
  waiters: (() => void)[];
}

export interface RespSession {
  /** RESP version spoken on this connection. */
  proto: reply.Proto;
  /** Who the connection is (null: not authenticated yet; src/security/users.ts). */
  user: User | null;
  /** The client's IP address (failed AUTHs are slowed per address). */
  readonly remoteIp: string | undefined;
  name: string;
  readonly id: number;
  readonly createdMs: number;
  lastCommand: string;
  /** After MULTI, until EXEC or DISCARD: commands are queued (src/resp/multi.ts). */
  multi: MultiState | null;
  /** After WATCH, until EXEC, DISCARD, UNWATCH or RESET. */
  watch: WatchState | null;
  /** After READONLY (until READWRITE or RESET): read-only commands may be served stale. */
  staleReads: boolean;
  /** After CLIENT TRACING ON (until OFF or RESET): each command is traced (docs/tracing.md). */
  tracing: boolean;
  /** The timeline of this connection's last traced command (TRACE LAST); null before the first. */
  readonly lastTrace: RespTrace | null;
  readonly address: string;
  readonly resp: RespHost;
  /** Pub/sub (pubsub.ts): the channels and patterns this connection is subscribed to, as latin1 strings of their bytes. */
  readonly subscriptions: { channels: Set<string>; patterns: Set<string> };
  /** An out-of-band message (pub/sub), queued after the answers before it and counted against the output limits. */
  push(frame: Uint8Array): void;
  /** The connection is closed or cut off: nothing pushed reaches it. */
  readonly gone: boolean;
}

/** A traced command's timeline, as TRACE LAST answers it. */
export interface RespTrace extends TraceOut {
  /** The command's name, lowercase, and its first key (at most 64 bytes), if any. */
  command: string;
}

/** What the commands need from the node. */
export interface RespHost {
  readonly dispatcher: Dispatcher;
  readonly maxValueBytes: number;
  /** Users, AUTH and its throttle (src/io/auth.ts). */
  readonly auth: Authenticator;
  port: number;
  readonly nativePort: number;
  /** A single node's persistence (SAVE, INFO persistence); null when it keeps nothing on disk. */
  readonly persistence: { dataDir: string; fsync: string } | null;
  /** Every RESP session, for CLIENT LIST and INFO. */
  sessions(): Iterable<RespSession>;
  /** Channels, patterns and keyspace notifications (pubsub.ts). */
  readonly pubsub: PubSubHub;
  readonly stats: { commands: number; connectionsReceived: number; rejectedCalls: number };
}

/** The next step of a command: its shard's result, and the request itself. */
export type Continuation = (r: Result, q: RespRequest) => void;

export class RespRequest extends InFlight {
  private continuation: Continuation | null = null;
  private parts: PartResult[] | null = null;
  private gathered: ((parts: PartResult[]) => void) | null = null;
  private holding = false;
  /** The op of the command last set up with cmd(). */
  private lastOp: Op = 0 as Op;
  /** The op one()'s continuation waits on; the op of each part of many()/everyShard(). */
  private continuationOp: Op = 0 as Op;
  private partOps: Op[] | null = null;
  /** A write of this command was applied (an earlier step, or a part of a fan-out). */
  private applied = false;
  /**
   * This command's reads carry FLAG_STALE_READ: the connection sent READONLY
   * and the command is read-only. (Tied to the Redis command's own flag, not
   * to the shard op, as Redis does: a write command's read step, if one ever
   * has one, must see the current value.)
   */
  stale = false;
  /** The transaction this request waits on (txn()). */
  private gather: TxnGather | null = null;
  /** Results that arrived while the transaction was being sent (an inline shard answers inside send()). */
  /** The command's name once started (its arguments are the parser's views, gone after this read). */
  commandName = "";

  /**
   * For the slow log: the command's first argument as the parser handed it out, and its count. The views
   * of a command last only its read, but the bytes under them are kept while the request is unanswered
   * (RespParser.keepsBytes): its arguments are read again from them only if its answer is slow, so a
   * request that is not slow pays two field writes (decision 0336). A held command (src/resp/connection.ts)
   * has copies of its arguments: its `raw` is null and `args` are read instead.
   */
  raw: Uint8Array | null;
  rawArgc: number;

  /** For the slow log: the command and its arguments as Redis 7 keeps them (src/io/slowlog.ts), secrets redacted. */
  override describe(): string[] {
    // No raw view but arguments: a command held past the dispatch window, whose arguments are its own copies.
    const args =
      this.raw !== null ? argsAfter(this.raw, this.rawArgc, SLOWLOG_MAX_ARGS) : this.rawArgc > 0 ? this.args : null;
    if (args !== null) return redacted(slowArgs(args, this.rawArgc));
    if (this.trace !== null && this.trace.label !== "") return this.trace.label.split(" ");
    return [this.commandName === "" ? "?" : this.commandName];
  }

  /** Whether this request only records what it would send (a command queued by MULTI: multi.ts). */
  readonly capturing: boolean = false;

  constructor(
    owner: RequestOwner,
    readonly session: RespSession,
    readonly args: Uint8Array[],
    readonly nowMs: number,
  ) {
    super(owner);
    this.raw = args.length > 0 ? args[0]! : null;
    this.rawArgc = args.length;
  }

  get d(): Dispatcher {
    return this.session.resp.dispatcher;
  }

  get proto(): reply.Proto {
    return this.session.proto;
  }

  reply(bytes: Uint8Array): void {
    this.finish(bytes);
  }

  error(text: string): void {
    this.finish(reply.error(text));
  }

  /** Answers a failure status (src/outcomes.ts) of a command with op `op`. */
  private fail(status: number, op: Op): void {
    this.error(respErrorText(status, isWrite(op), this.applied));
  }

  /** A fresh command; set its fields, then pass it to one()/many(). */
  cmd(op: Op): CommandFields {
    const c = this.d.begin(op, this.nowMs);
    if (this.stale && !isWrite(op)) c.flags = FLAG_STALE_READ;
    this.lastOp = op;
    return c;
  }

  /**
   * Sends the command (already set up with cmd()) for `key`; `then` gets its
   * result (and this request: a hot command's step can be one function for
   * every request, not a closure made per request).
   */
  one(key: Uint8Array, then: Continuation): void {
    if (!this.valueOk()) return;
    this.continuation = then;
    this.continuationOp = this.lastOp;
    this.d.sendKey(this, 0, key);
  }

  /** As one(), to a given shard (SCAN walks shards by number). */
  oneAt(shard: number, key: Uint8Array, then: Continuation): void {
    this.continuation = then;
    this.continuationOp = this.lastOp;
    this.d.send(shard, this, 0, key);
  }

  /**
   * Sends `n` commands; build(i) sets up command i with cmd() and returns its
   * key. `then` gets every result, in order, once all are back.
   */
  many(n: number, build: (i: number) => Uint8Array, then: (parts: PartResult[]) => void): void {
    this.parts = new Array<PartResult>(n);
    this.partOps = new Array<Op>(n);
    this.gathered = then;
    // Held open while sending: inline shards answer inside send().
    this.holding = true;
    for (let i = 0; i < n; i++) {
      const key = build(i);
      this.partOps![i] = this.lastOp;
      this.d.sendKey(this, i, key);
    }
    this.holding = false;
    if (this.remaining === 0) this.complete();
  }

  /**
   * One command `op` per key (MGET, DEL, EXISTS...), after checking the keys
   * and the batch limit; `then` gets the results in key order.
   */
  eachKey(keys: Uint8Array[], op: Op, then: (parts: PartResult[]) => void): void {
    if (keys.length > MAX_BATCH_KEYS) return this.error(`ERR too many keys (the limit is ${MAX_BATCH_KEYS})`);
    for (const k of keys) if (!this.keyOk(k)) return;
    this.many(
      keys.length,
      (i) => {
        this.cmd(op);
        return keys[i]!;
      },
      then,
    );
  }

  /** Sends command `op` (with `arg0`) to every shard; `then` gets the results by shard. */
  everyShard(op: Op, then: (parts: PartResult[]) => void, arg0 = 0): void {
    const n = this.d.shardCount;
    this.parts = new Array<PartResult>(n);
    this.partOps = new Array<Op>(n).fill(op);
    this.gathered = then;
    this.holding = true;
    for (let s = 0; s < n; s++) {
      this.cmd(op).arg0 = arg0;
      this.d.send(s, this, s, EMPTY);
    }
    this.holding = false;
    if (this.remaining === 0) this.complete();
  }

  /**
   * Runs `spec` as one transaction (src/io/txn.ts): atomic and isolated
   * across this node's shards; in a cluster all its keys must be in one
   * partition, else CROSSSLOT and nothing is applied. `then` gets the
   * outcome when the transaction ran (either branch); a failure (refused,
   * timed out...) is answered here, as for one().
   */
  txn(spec: TxnSpec, then: (o: TxnOutcome) => void): void {
    const writes = spec.success.some((o) => isWrite(o.op)) || spec.failure.some((o) => isWrite(o.op));
    const bad = checkTxn(spec, this.session.resp.maxValueBytes);
    if (bad !== null) return this.error(respErrorText(bad.code, writes, this.applied));
    const g = sendTxn(
      this.d,
      this,
      spec,
      this.nowMs,
      (o) => {
        this.gather = null;
        if (o.status !== ErrorCode.OK) {
          if (this.owner.gone && !this.applied && !writes) return;
          return this.error(respErrorText(o.status, writes, this.applied));
        }
        if ((o.succeeded ? spec.success : spec.failure).some((op) => isWrite(op.op))) this.applied = true;
        then(o);
      },
      // Before any part is sent: inline shards answer inside send().
      (gather) => {
        this.gather = gather;
      },
    );
    if ("code" in g) return this.error(respErrorText(g.code, writes, this.applied));
  }

  onResult(part: number, r: Result, d: Dispatcher): void {
    if (this.gather !== null) return this.gather.onPart(part, r.status, r.flag, r.value, d);
    if (this.continuation !== null) {
      const then = this.continuation;
      const op = this.continuationOp;
      this.continuation = null;
      // A client gone before any write of this command: the next step need not be taken.
      if (this.owner.gone && !this.applied && !isWrite(op)) return;
      if (!isDataOutcome(op, r.status)) return this.fail(r.status, op);
      if (r.status === 0 && isWrite(op)) this.applied = true;
      then(r, this);
      return;
    }
    // A gone client's answer is never written: keep the outcome, not the value.
    this.parts![part] = copyResult(r, !this.owner.gone);
    if (this.remaining === 0 && !this.holding) this.complete();
  }

  private complete(): void {
    const then = this.gathered!;
    const parts = this.parts!;
    const ops = this.partOps!;
    this.gathered = null;
    this.parts = null;
    this.partOps = null;
    if (this.owner.gone && !this.applied && !ops.some((op) => isWrite(op))) return;
    let failed = -1;
    for (let i = 0; i < parts.length; i++) {
      const status = parts[i]!.status;
      if (!isDataOutcome(ops[i]!, status)) {
        if (failed < 0) failed = i;
      } else if (status === 0 && isWrite(ops[i]!)) this.applied = true;
    }
    if (failed >= 0) return this.fail(parts[failed]!.status, ops[failed]!);
    then(parts);
  }

  /**
   * Checks the value of the command set up with cmd(): a write's value may
   * not pass --max-value-bytes (the parser lets an argument be as long as
   * a key, 64 KiB, which may be more). Answers the error and returns false
   * when it does.
   */
  private valueOk(): boolean {
    const v = this.d.cmd.value;
    if (v === null || !isWrite(this.lastOp) || v.length <= this.session.resp.maxValueBytes) return true;
    this.error(respErrorText(ErrorCode.VALUE_TOO_LARGE, true));
    return false;
  }

  /** Checks a key argument; answers the error and returns false when it is not acceptable. */
  keyOk(key: Uint8Array): boolean {
    if (key.length === 0) {
      this.error("ERR empty keys are not supported by Piccolo");
      return false;
    }
    if (key.length > MAX_KEY_BYTES) {
      this.error(`ERR key too large (${key.length} bytes; the limit is ${MAX_KEY_BYTES})`);
      return false;
    }
    return true;
  }
}

const EMPTY = new Uint8Array(0);
