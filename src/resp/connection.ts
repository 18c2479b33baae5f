/**
 * A socket speaking RESP: the Redis port's counterpart of NativeConnection.
 * Parsing, authentication and the command table live here; ordering and
 * backpressure come from the shared Connection base.
 */
import type { Socket } from "node:net";
import { Connection, type ConnectionHost } from "../io/connection.js";
import type { InFlight } from "../io/dispatch.js";
import { MAX_KEY_BYTES, respMaxQueryBytes, SHUTDOWN_QUIET_MS, TRACE_MAX_IN_FLIGHT_PER_CONNECTION } from "../limits.js";
import { Trace, traceClock } from "../io/trace.js";
import { ErrorCode } from "../errors.js";
import { outcomeOf } from "../outcomes.js";
import { ALL_PERMS, mayAccess, mayRun, NOPERM_KEY, nopermCommand, Perm, type User } from "../security/users.js";
import { errorText } from "./args.js";
import { type CommandSpec, lookupBytes } from "./commands.js";
import { Hot, HOT_NAMES, hotCommand, type HotRun } from "./hot.js";
import { LoggedHotRun } from "./slow-args.js";
import { RespParser } from "./parser.js";
import { subscribed } from "./pubsub.js";
import { smallCopy } from "../small-bytes.js";
import * as reply from "./reply.js";
import { enqueue, NOT_QUEUED } from "./multi.js";
import {
  type MultiState,
  type RespHost,
  RespRequest,
  type RespSession,
  type RespTrace,
  type WatchState,
} from "./request.js";

let nextClientId = 1;

/**
 * Commands that take more than one step before they write (a read, then a
 * transaction; EXEC waiting for its WATCH's reads): the connection starts
 * nothing after one of them until it answers.
 */
const BARRIERS = new Set(["exec", "rename", "renamenx", "copy", "auth", "hello", "acl"]);

const dec = new TextDecoder();

/** Commands allowed before AUTH when a password is required (as Redis). */
const BEFORE_AUTH = new Set(["auth", "hello", "quit", "reset"]);

/** What a RESP2 connection may send while subscribed (as Redis; RESP3 may send anything). */
const WHILE_SUBSCRIBED = new Set([
  "subscribe",
  "psubscribe",
  "unsubscribe",
  "punsubscribe",
  "ssubscribe",
  "sunsubscribe",
  "ping",
  "quit",
  "reset",
]);

/**
 * Why `user` may not run this command, in Redis's words, or null when it
 * may: its category (commands.ts), then each key at the table's key
 * positions against the user's patterns. (KEYS and SCAN list names without
 * the patterns applied, as in Redis: docs/security.md.)
 */
function respRefusal(user: User, spec: CommandSpec, args: Uint8Array[]): string | null {
  let need = spec.perm;
  // CLIENT LIST shows every client's address and command: an admin's (as in Redis).
  if (spec.name === "client" && args.length >= 2 && dec.decode(args[1]!).toLowerCase() === "list") need = Perm.ADMIN;
  if (!mayRun(user, need)) return nopermCommand(user, spec.name);
  if (user.keys === null || spec.firstKey === 0) return null;
  const last = spec.lastKey < 0 ? args.length + spec.lastKey : Math.min(spec.lastKey, args.length - 1);
  for (let i = spec.firstKey; i <= last; i += spec.step) if (!mayAccess(user, args[i]!)) return NOPERM_KEY;
  return null;
}

export class RespConnection extends Connection implements RespSession {
  proto: reply.Proto = 2;
  name = "";
  readonly id = nextClientId++;
  readonly createdMs = Date.now();
  lastCommand = "NULL";
  multi: MultiState | null = null;
  watch: WatchState | null = null;
  staleReads = false;
  tracing = false;
  lastTrace: RespTrace | null = null;
  readonly subscriptions = { channels: new Set<string>(), patterns: new Set<string>() };
  readonly address: string;
  private readonly parser: RespParser;
  /**
   * The node is stopping (goAway): this connection is served as usual until
   * it is idle, and half-closed there (leaveIfIdle). Decision 0274 says why.
   */
  private leaving = false;
  /**
   * The stop stopped waiting (SHUTDOWN_RESP_IDLE_MAX_MS) while this
   * connection had a MULTI or a WATCH open: what it reads from then on is
   * answered SHUTDOWN, not carried out, until the node closes it.
   */
  private refusing = false;
  /** While refusing: when the client last sent something (see mayStillSend). */
  private lastReadMs = 0;
  constructor(
    socket: Socket,
    host: ConnectionHost,
    readonly resp: RespHost,
  ) {
    super(socket, host);
    this.address = `${socket.remoteAddress}:${socket.remotePort}`;
    if (host.auth.refuses(socket.remoteAddress)) {
      host.limitHit("protected-mode", "refused a client from another machine: protected mode", {
        remote: socket.remoteAddress,
      });
      this.fatal(reply.error(`DENIED ${outcomeOf(ErrorCode.DENIED).text}`));
    }
    // proto-max-bulk-len: one argument is at most a value (or a key, if the value limit is smaller).
    this.parser = new RespParser(Math.max(host.maxValueBytes, MAX_KEY_BYTES), respMaxQueryBytes(host.maxValueBytes));
    this.parser.hot = this.takeHot;
    // The bytes of a request whose answer is not made yet stay where they are, for the slow log, which
    // reads them when the answer is made (decision 0336). Not `pending`: that counts answers made and
    // not yet written too, which hold no bytes; with it, every read of a pipeline that came in the same
    // turn as the one before it (libuv reads a busy socket several times a turn) found the buffer
    // "kept" and grew a new one, 10-15 MiB more RSS after loading 1M keys (decision 0299).
    this.parser.keepsBytes = () => this.unanswered > 0;
  }

  protected onBytes(chunk: Uint8Array, nowMs: number, lent: boolean): void {
    if (this.refusing) this.lastReadMs = nowMs;
    this.parser.push(chunk, (args) => this.command(args, nowMs), lent);
    const error = this.parser.error;
    if (error !== null) {
      if (this.parser.limit !== null)
        this.host.limitHit(`resp-${this.parser.limit}`, "closing a RESP connection over a command limit", {
          remote: this.address,
          error,
        });
      else this.host.log("info", "closing RESP connection on a protocol error", { error });
      this.fatal(reply.error(error));
    }
  }

  /**
   * The parser offers a complete command of up to 3 arguments: taken here
   * when it is a plain GET, SET or INCR that needs none of the general
   * path's checks (src/resp/hot.ts lists them), else left to command().
   */
  private readonly takeHot = (b: Uint8Array, start: number, offsets: Int32Array, argc: number): boolean => {
    const hot = hotCommand(b, start, offsets, argc);
    if (hot === Hot.NONE) return false;
    const user = this.user;
    if (
      user === null ||
      user.deleted ||
      user.perms !== ALL_PERMS ||
      user.keys !== null ||
      this.refusing ||
      this.tracing || // a traced command takes the general path, where its stages are stamped
      this.multi !== null ||
      !this.resp.dispatcher.inOrder ||
      (this.proto === 2 && subscribed(this)) ||
      !this.mayStart()
    )
      return false;
    const keyLength = offsets[3]!;
    if (keyLength === 0 || keyLength > MAX_KEY_BYTES) return false;
    if (hot === Hot.SET && offsets[5]! > this.resp.maxValueBytes) return false;
    const run = (this.joinableRun() as HotRun | null) ?? this.startRun(this.loggedRun(b, start, offsets, argc));
    this.resp.stats.commands++;
    this.lastCommand = HOT_NAMES[hot];
    const keyAt = start + offsets[2]!;
    const key = b.subarray(keyAt, keyAt + keyLength);
    let value: Uint8Array | null = null;
    if (hot === Hot.SET) {
      const valueAt = start + offsets[4]!;
      value = b.subarray(valueAt, valueAt + offsets[5]!);
    }
    run.send(this.resp.dispatcher, hot, key, value, this.readMs);
    return true;
  };

  /**
   * A new run: the slow log times it as one request, and reads its first
   * command again if it was slow, from `b` where it lies, or, when `b` is a
   * lent read (src/io/read-buffer.ts: overwritten before a durable node's
   * answers go out), from a copy of that one command.
   */
  private loggedRun(b: Uint8Array, start: number, offsets: Int32Array, argc: number): LoggedHotRun {
    if (!this.parser.lending) return new LoggedHotRun(this, this.proto, b, start);
    const end = start + offsets[2 * argc - 2]! + offsets[2 * argc - 1]! + 2;
    return new LoggedHotRun(this, this.proto, smallCopy(b, start, end), 0);
  }

  private command(args: Uint8Array[], nowMs: number): void {
    // Queued after a run of hot commands: the run takes no more, so answers keep their order.
    this.endRun();
    if (this.mayStart()) {
      const req = new RespRequest(this, this, args, nowMs);
      req.receivedAt = this.chunkAt;
      if (this.tracing) this.startTrace(req);
      this.enqueue(req);
      return this.start(req);
    }
    // Held past the dispatch window (src/io/connection.ts): the parser's views last only this read.
    const req = new RespRequest(
      this,
      this,
      args.map((a) => a.slice()),
      nowMs,
    );
    // The copies are the request's own: the slow log reads them, and the read's bytes need not be kept for it.
    req.raw = null;
    req.receivedAt = this.chunkAt;
    if (this.tracing) this.startTrace(req);
    this.enqueue(req);
    // Held in order by the base (past the dispatch window, or behind a barrier).
    this.hold(req);
  }

  /**
   * CLIENT TRACING ON: this command's timeline is kept for TRACE LAST
   * (docs/tracing.md). TRACE and CLIENT are not traced (TRACE reads the last one, CLIENT TRACING OFF must not replace it);
   * past TRACE_MAX_IN_FLIGHT_PER_CONNECTION traced commands in flight, a
   * command is served untraced: RESP has no place in an answer to say so,
   * and TRACE LAST then shows the last one that was.
   */
  private startTrace(req: RespRequest): void {
    const name = dec.decode(req.args[0]!.subarray(0, 32)).toLowerCase();
    if (name === "trace" || name === "client" || this.tracedInFlight >= TRACE_MAX_IN_FLIGHT_PER_CONNECTION) return;
    const t = new Trace(this.chunkAt);
    t.parsedAt = traceClock();
    t.add("received", "io", t.t0, t.parsedAt, `RESP command, ${req.args.length} arguments, parsed`);
    // The arguments are views into the parser's buffer, valid during this read only: the label is taken now.
    const args = req.args;
    t.label = `${name}${args.length > 1 ? ` ${dec.decode(args[1]!.subarray(0, 64))}` : ""}`;
    req.trace = t;
    this.tracedInFlight++;
  }

  override traceEnded(req: InFlight): void {
    super.traceEnded(req);
    const t = req.trace!;
    t.add("encoded", "io", t.lastResultAt > 0 ? t.lastResultAt : t.parsedAt, traceClock(), "the answer laid out");
    this.lastTrace = {
      command: t.label,
      node: this.host.dispatcher.traceNode,
      spans: t.ordered(),
      dropped: t.dropped,
    };
  }

  /**
   * The node is stopping. Redis has no "go away", and a Redis library sends
   * every command that got no answer again on its next connection (ioredis:
   * autoResendUnfulfilledCommands, on by default). So nothing read
   * is refused or left unanswered: the connection goes on as usual until it
   * is idle, then half-closes; the client reconnects, and what it sends
   * after the close (never read, never carried out) it sends again there.
   */
  override goAway(): void {
    this.leaving = true;
    this.leaveIfIdle();
  }

  override get servingWhileStopping(): boolean {
    return this.leaving && !this.ending && !this.refusing && !this.gone;
  }

  /**
   * The stop waited long enough for an idle moment (a client that pipelines
   * without pause, or holds a transaction open). Without a transaction open:
   * read nothing more, answer what was read, half-close. With one: refuse
   * (SHUTDOWN) what comes, rather than close and let the client send its
   * EXEC again on a new connection, where the MULTI or the WATCH before it
   * no longer exists (an EXEC run without the WATCH it relied on).
   */
  override stopServing(): void {
    if (!this.servingWhileStopping) return;
    if (this.multi !== null || this.watch !== null) {
      this.refusing = true;
      this.lastReadMs = Date.now();
    } else this.endGently();
  }

  /**
   * Refusing (SHUTDOWN) past the stop's bound, a Redis client has no "go
   * away" to answer with a FIN: it goes on sending until its transaction
   * fails. The stop closes the connection once the client has been quiet
   * for SHUTDOWN_QUIET_MS (at most SHUTDOWN_QUIET_MAX_MS), so what it sends
   * until then is answered SHUTDOWN rather than dropped unread.
   */
  override get mayStillSend(): boolean {
    return this.refusing && !this.ending && !this.gone && Date.now() - this.lastReadMs < SHUTDOWN_QUIET_MS;
  }

  override get owedAnswers(): number {
    return this.gone ? 0 : this.pending;
  }

  override flush(): void {
    super.flush();
    if (this.leaving) this.leaveIfIdle();
  }

  /**
   * Half-closes if nothing read is unanswered, no command is half-received
   * (the rest of it, or of the pipeline it is in, is on its way: closing
   * now would cut a pipeline in two) and no transaction is open (MULTI, or
   * a WATCH whose EXEC is to come).
   */
  private leaveIfIdle(): void {
    if (
      this.servingWhileStopping &&
      this.pending === 0 &&
      !this.parser.partial &&
      this.multi === null &&
      this.watch === null
    )
      this.endGently();
  }

  protected startHeld(req: InFlight): void {
    this.start(req as RespRequest);
  }

  private start(req: RespRequest): void {
    // Only past the stop's wait, with a transaction open (stopServing): nothing applied, and said so.
    if (this.refusing) return req.error(errorText(ErrorCode.SHUTTING_DOWN));
    const args = req.args;
    this.resp.stats.commands++;
    const spec = lookupBytes(args[0]!);
    if (spec === undefined) {
      this.resp.stats.rejectedCalls++;
      if (this.multi !== null) this.multi.dirty = true;
      const shown = args
        .slice(1, 21)
        .map((a) => `'${dec.decode(a.subarray(0, 128))}' `)
        .join("");
      return req.error(
        `ERR unknown command '${dec.decode(args[0]!.subarray(0, 128))}', with args beginning with: ${shown}`,
      );
    }
    const name = spec.name;
    this.lastCommand = name;
    req.commandName = name;
    const user = this.user;
    if ((user === null || user.deleted) && !BEFORE_AUTH.has(name)) {
      this.resp.stats.rejectedCalls++;
      return req.error("NOAUTH Authentication required.");
    }
    if (user !== null && (user.perms !== ALL_PERMS || user.keys !== null)) {
      const refusal = respRefusal(user, spec, args);
      if (refusal !== null) {
        this.resp.stats.rejectedCalls++;
        if (this.multi !== null) this.multi.dirty = true;
        return req.error(`NOPERM ${refusal}`);
      }
    }
    if ((spec.arity > 0 && args.length !== spec.arity) || (spec.arity < 0 && args.length < -spec.arity)) {
      this.resp.stats.rejectedCalls++;
      if (this.multi !== null) this.multi.dirty = true;
      return req.error(`ERR wrong number of arguments for '${name}' command`);
    }
    if (this.proto === 2 && subscribed(this) && !WHILE_SUBSCRIBED.has(name)) {
      this.resp.stats.rejectedCalls++;
      return req.error(
        `ERR Can't execute '${name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context`,
      );
    }
    if (this.multi !== null && !NOT_QUEUED.has(name)) return enqueue(req, name);
    req.stale = this.staleReads && spec.readOnly;
    spec.run(req);
    // A pipelined GET after RENAME or EXEC must see its writes.
    if (req.out === null && BARRIERS.has(name)) this.barrierOn(req);
  }

  protected get portName(): string {
    return "resp";
  }

  protected override get clientName(): string {
    return this.name;
  }

  protected get partial(): boolean {
    return this.parser.partial;
  }

  protected truncatedAnswer(): Uint8Array {
    return reply.error("ERR Protocol error: the stream ended inside a command");
  }
}
