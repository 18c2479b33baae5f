/**
 * One client socket, whatever its protocol: requests in, answers back in
 * request order, with backpressure. Subclasses parse their protocol
 * (native.ts: Cap'n Proto frames; src/resp: the Redis protocol).
 *
 * Order. Requests are queued in arrival order; each completes whenever its
 * shards answer, but the socket only ever writes the complete prefix of the
 * queue. So answers leave in request order whatever order shards finish in.
 *
 * Backpressure, never drops. The socket stops being read when
 *   - this connection has MAX_INFLIGHT_PER_CONNECTION requests unanswered,
 *   - it holds requests back (the dispatch window, below),
 *   - the answers it holds exceed MAX_PENDING_WRITE_BYTES (a slow reader), or
 *   - a shard's ring is congested (the server pauses everyone),
 * and resumes when the condition clears. TCP flow control then slows the
 * client down; nothing is ever discarded.
 *
 * Fairness: the dispatch window. One socket read can hold thousands of
 * pipelined requests, and a shard serves its ring in order: started at once,
 * 2,000 GETs of a 1 MiB value would put seconds of work ahead of every other
 * client's next command. So a connection starts at most `window` requests
 * at a time, where the window is DISPATCH_WINDOW_BYTES over the size of its
 * recent answers (limits.ts); requests read beyond it are queued in order but
 * held, not started, and the socket is paused until answers come back. A
 * held request's bytes are its own copy (a RESP parser's views do not
 * outlive the read). Starting is unchanged while within the window: a
 * comparison per request.
 *
 * The output limit. Pausing stops new requests, not the answers to those
 * already read: 4,096 GETs in flight of a 1 MiB value are 4 GiB of answers
 * that will arrive whether the client reads or not. So the connection counts
 * the bytes of answers it holds (`heldBytes`: answers complete in its queue,
 * the values of multi-part answers gathered so far, charged as each shard's
 * result arrives; plus what the socket has taken and the kernel has not) and
 * is closed, as Redis closes a client over its client-output-buffer-limit,
 * once they exceed the hard limit (`--client-output-limit-bytes`), or once
 * they stay over MAX_PENDING_WRITE_BYTES while the client reads nothing for
 * `--client-output-stall-ms`. Each is a comparison per answer or per check;
 * both are logged (rate-limited: src/limit-log.ts). docs/architecture.md
 * derives the memory bound per connection from these.
 *
 * Barriers. A request whose effect the requests after it must see before
 * they start (an AUTH being checked, which decides whether they may run; a
 * Redis EXEC or RENAME, whose writes a pipelined GET must see) is made a
 * barrier: requests read after it are queued for their answers' order but
 * not started until it answers, then started in order up to the next
 * barrier.
 *
 * Bad input that the parser can step over gets an error answer and the
 * connection goes on. A stream that cannot be resynchronised gets a final
 * error answer (fatal()) and is closed after the answers before it are
 * written. Other connections never notice.
 */
import type { Socket } from "node:net";
import {
  CLOSE_LINGER_MS,
  DISPATCH_WINDOW_BYTES,
  DISPATCH_WINDOW_MIN,
  DISPATCH_WINDOW_START,
  MAX_INFLIGHT_PER_CONNECTION,
  MAX_PENDING_WRITE_BYTES,
} from "../limits.js";
import type { LimitLevel } from "../limit-log.js";
import type { Result } from "../shard/command.js";
import type { User } from "../security/users.js";
import type { Authenticator } from "./auth.js";
import { type Dispatcher, InFlight, type RequestOwner } from "./dispatch.js";
import type { Run } from "./run.js";
import { readInto } from "./read-buffer.js";
import { traceClock } from "./trace.js";

export interface ConnectionHost {
  readonly maxValueBytes: number;
  readonly maxFrameBytes: number;
  /** The output hard limit (`--client-output-limit-bytes`): past it the connection is closed. */
  readonly maxOutputBytes: number;
  /** Over the soft limit with nothing read for this long, the connection is closed (`--client-output-stall-ms`). */
  readonly outputStallMs: number;
  readonly dispatcher: Dispatcher;
  /** Users, AUTH and protected mode (auth.ts). */
  readonly auth: Authenticator;
  /** Paused by shard congestion. */
  readingBlocked(): boolean;
  /** The node is stopping: requests read from now on are answered SHUTTING_DOWN, not carried out. */
  readonly stopping: boolean;
  /** Commands were sent: publish the rings at the end of this turn, watch congestion. */
  afterDispatch(): void;
  /** This connection has answers ready to write at the end of the turn. */
  markDirty(conn: Connection): void;
  closed(conn: Connection): void;
  log(level: "debug" | "info" | "warn", message: string, detail?: object): void;
  /** A limit was hit (`limit` names it): logged, rate-limited per limit (src/limit-log.ts). */
  limitHit(limit: string, message: string, detail?: object, level?: LimitLevel): void;
}

/** An answer known before any shard is asked (errors, PING, QUIT). */
export class Ready extends InFlight {
  onResult(_part: number, _r: Result, _d: Dispatcher): void {}
}

export abstract class Connection implements RequestOwner {
  private readonly queue: InFlight[] = [];
  private queueHead = 0;
  private reading = true;
  /** A final answer is queued; close once the queue drains, read nothing more. */
  protected ending = false;
  closed = false;
  private dirty = false;
  /** Closed by this side for breaking a limit: nothing more is read, answered or counted. */
  private cut = false;
  /**
   * Ending on a stop: the socket is read, and what arrives dropped, until the
   * client closes its side (endForStop). A socket closed with unread bytes
   * in the kernel sends a reset instead of a FIN, and a reset can make the
   * client's kernel throw away answers it had received but its program had
   * not read yet. What is dropped was never carried out, so a client that
   * sends it again (a Redis library does) applies it once.
   */
  private dropInput = false;
  /**
   * Bytes read and dropped after the end (see dropInput). A client that
   * still sends after the node's FIN has not read up to it: a stop waits
   * for it (src/io/server.ts, waitForClients).
   */
  droppedBytes = 0;
  /** Bytes of answers held in the queue (complete, or gathered so far), not yet handed to the socket. */
  private queuedBytes = 0;
  /** Bytes handed to the socket so far, and how many had left it (to the kernel) at the last stall check. */
  private handedBytes = 0;
  private sentAtCheck = 0;
  /** When the client was first seen reading nothing while over the soft limit (0: it is not). */
  private stalledSinceMs = 0;
  /** Requests in the queue not yet finished, started or held. */
  private unfinished = 0;
  /** Requests read but not started (the dispatch window), in order; `heldHead` is the next to start. */
  private held: InFlight[] = [];
  private heldHead = 0;
  /** The recent answers' size, bytes (a moving average), and the dispatch window it gives. */
  private answerBytes = DISPATCH_WINDOW_BYTES / DISPATCH_WINDOW_START;
  private window = DISPATCH_WINDOW_START;
  /** A started request the ones after it must not overtake (see the file comment), and those waiting for it. */
  private barrier: InFlight | null = null;
  private afterBarrier: InFlight[] = [];
  /** The run of hot requests taking more this read (src/io/run.ts), if any. */
  private run: Run | null = null;
  /** When the chunk being parsed arrived (src/io/trace.ts's clock). */
  protected chunkAt = 0;
  /** When the chunk being parsed arrived (Date.now()): a TTL counts from then. */
  protected readMs = 0;
  /** Traced requests read and not yet answered (at most TRACE_MAX_IN_FLIGHT_PER_CONNECTION). */
  protected tracedInFlight = 0;
  /** Who this connection is: the default user when it needs no password, else null until AUTH. */
  user: User | null;

  constructor(
    readonly socket: Socket,
    protected readonly host: ConnectionHost,
  ) {
    this.user = host.auth.users.initialUser();
    socket.setNoDelay(true);
    // Each read, into the buffer all connections share (lent: read-buffer.ts), or where it cannot be, as
    // 'data' (a buffer of its own).
    const onChunk = (chunk: Uint8Array, lent: boolean): void => {
      if (this.ending) {
        this.droppedBytes += chunk.length;
        return;
      }
      // When these bytes arrived, on the trace clock: a traced request's "received" starts here.
      this.chunkAt = traceClock();
      this.readMs = Date.now();
      this.onBytes(chunk, this.readMs, lent);
      // A run takes requests of one read only: it is answered once its results are in.
      this.endRun();
      this.host.afterDispatch();
      this.updateReading();
    };
    if (!readInto(socket, (chunk) => onChunk(chunk, true))) socket.on("data", (chunk: Buffer) => onChunk(chunk, false));
    socket.on("end", () => this.onEnd());
    socket.on("drain", () => {
      // The client read what held requests back (the soft limit): start them now. Their answers may be
      // made inside the start (the maps on the IO thread answer at once), so no later answer would come
      // to do it, and the connection would wait forever (found with --shards 0 and 1 MiB values).
      if (this.heldHead < this.held.length && this.release()) this.host.afterDispatch();
      this.updateReading();
    });
    socket.on("error", (err) => host.log("debug", "socket error", { err: err.message }));
    socket.on("close", () => {
      this.closed = true;
      host.closed(this);
    });
  }

  /**
   * Parses bytes into requests: enqueue() each, then start it. A `lent`
   * chunk is overwritten once this returns (src/io/read-buffer.ts): what a
   * request needs after that must be copied out.
   */
  protected abstract onBytes(chunk: Uint8Array, nowMs: number, lent: boolean): void;

  /** True when the peer's stream stopped inside a request. */
  protected abstract get partial(): boolean;

  /** The final answer for a stream that ended inside a request. */
  protected abstract truncatedAnswer(): Uint8Array;

  /** Requests read whose answers are not made yet (started, held, or waiting for their results). */
  protected get unanswered(): number {
    return this.unfinished;
  }

  /** Requests received and not yet answered. */
  get pending(): number {
    return this.queue.length - this.queueHead;
  }

  /** The client's IP address. */
  get remoteIp(): string | undefined {
    return this.socket.remoteAddress;
  }

  /** No answer will be written any more: results for its requests are dropped (dispatch.ts). */
  get gone(): boolean {
    return this.closed || this.cut;
  }

  /** Bytes of answers this connection holds in user space: its queue's and the socket's (see the file comment). */
  get heldBytes(): number {
    return this.queuedBytes + this.socket.writableLength;
  }

  /**
   * An answer no request waits for (a watch's next frame): queued after the
   * answers before it and counted against this connection's output limits
   * like any answer. Dropped when the connection is gone or ending.
   */
  push(answer: Uint8Array): void {
    if (this.gone || this.ending) return;
    const req = new Ready(this);
    this.enqueue(req);
    req.finish(answer);
  }

  /**
   * The node is stopping: tell the client, where the protocol can, to send
   * nothing more on this connection (the native protocol's "go away"). RESP
   * has no such message: a Redis connection is served until it is idle and
   * closed there instead (src/resp/connection.ts).
   */
  goAway(): void {}

  /**
   * After goAway(): still carrying out what it reads, waiting for a moment
   * to close (a Redis connection; the stop waits for these, bounded).
   */
  get servingWhileStopping(): boolean {
    return false;
  }

  /**
   * After goAway(): the client may still send requests the stop must read
   * and answer (SHUTTING_DOWN), because it has not yet said it sends
   * nothing more (a native client ends its side on the "go away"). The stop
   * waits for these before it half-closes, bounded by SHUTDOWN_QUIET_MAX_MS.
   */
  get mayStillSend(): boolean {
    return false;
  }

  /** The stop's wait for an idle moment is over (SHUTDOWN_RESP_IDLE_MAX_MS): take no more requests. */
  stopServing(): void {}

  /**
   * Requests read whose answers the stop must wait for before closing: a
   * Redis client sends an unanswered command again on its next connection,
   * so closing before its answer could apply it twice. (A native client is
   * never sent away with a request unanswered but the ones read before the
   * stop, which the grace period covers; one it loses is an unknown outcome
   * to it, never resent blindly.)
   */
  get owedAnswers(): number {
    return 0;
  }

  /**
   * The last step of a stop: writes what is answered, half-closes (a FIN
   * after the last answer, so the client reads every answer before it
   * sees the close), and reads and drops what arrives until the client
   * closes its side (see dropInput). Requests still unanswered stay so.
   */
  endForStop(): void {
    if (this.gone) return;
    this.flush();
    this.endGently();
  }

  /**
   * Reads nothing more as requests: half-closes once every request read is
   * answered (now, if they are), reading and dropping what arrives meanwhile
   * and after (see dropInput).
   */
  protected endGently(): void {
    if (this.gone) return;
    this.ending = true;
    this.dropInput = true;
    if (this.pending === 0) this.endSocket();
    else this.updateReading();
  }

  /**
   * Half-closes, once. A client that keeps sending after its final answer
   * (endless bulk data), or never closes, would hold the half-closed
   * connection forever: it is dropped after a grace period in which it can
   * read its answers, CLOSE_LINGER_MS, extended as long as it goes on
   * taking them (the answers still in the socket's buffer shrink). A stop
   * can leave megabytes of answers there for a pipelining client; dropped
   * unread, they would be commands applied and never answered. On a stop
   * (dropInput) it is also extended while the client still sends: it has
   * not read up to the FIN yet, and a reset would drop what the kernel
   * still holds for it; the stop's own bound ends that (waitForClients).
   */
  private endSocket(): void {
    if (this.socket.writableEnded) return;
    this.socket.end();
    this.lingerFrom(unsent(this.socket), this.droppedBytes);
    this.updateReading();
  }

  private lingerFrom(before: Unsent, dropped: number): void {
    setTimeout(() => {
      const now = unsent(this.socket);
      if ((now.buffered > 0 && taken(before, now)) || (this.dropInput && this.droppedBytes > dropped))
        this.lingerFrom(now, this.droppedBytes);
      else this.socket.destroy();
    }, CLOSE_LINGER_MS).unref();
  }

  /** Whether pushing more now keeps this connection under its soft output limit (a watch's backpressure). */
  get canTakeMore(): boolean {
    return !this.gone && !this.ending && this.queuedBytes + this.socket.writableLength < MAX_PENDING_WRITE_BYTES;
  }

  /** Appends a request to the answer queue (before starting it: inline shards answer at once). */
  protected enqueue(req: InFlight): void {
    this.queue.push(req);
    this.unfinished++;
  }

  /**
   * Whether `req` is the last request queued: a run of hot Redis commands
   * (src/resp/hot.ts) takes more commands only while nothing is queued
   * after it, so answers stay in request order.
   */
  protected isLast(req: InFlight): boolean {
    const q = this.queue;
    return q.length > this.queueHead && q[q.length - 1] === req;
  }

  /**
   * The run (src/io/run.ts) a hot request may join: the one taking requests
   * this read, while it is open and still the last request queued (then the
   * request counts against the dispatch window as one of its own would);
   * else null, and the old run takes no more: the caller starts a new one.
   */
  protected joinableRun(): Run | null {
    const run = this.run;
    if (run?.open && this.isLast(run)) {
      this.unfinished++;
      return run;
    }
    this.endRun();
    return null;
  }

  /** Queues a new run; it takes the hot requests that follow (joinableRun). Timed for the slow log as one request. */
  protected startRun<R extends Run>(run: R): R {
    run.receivedAt = this.chunkAt;
    // Sized like the last run of this connection: a pipelining client's batches tend to be alike.
    if (this.lastRunBytes > 0) run.expect(this.lastRunBytes);
    this.run = run;
    this.enqueue(run);
    return run;
  }

  /** The run takes no more requests (something else was read, or the read ended): answered once its results are in. */
  protected endRun(): void {
    const run = this.run;
    if (run === null) return;
    this.run = null;
    // Its answers so far (all of them, when its shard answers as it runs: the maps on the IO thread).
    this.lastRunBytes = run.answerBytes;
    run.close();
  }

  /** Bytes of answers the last run of this connection held when it ended: the next one's first size. */
  private lastRunBytes = 0;

  /**
   * Whether the request just read, before it is enqueued, may start now
   * (within the dispatch window, nothing held before it, the answers held
   * under the soft limit); if not, the caller enqueues it and holds it with
   * hold(), on its own copy of its bytes.
   */
  protected mayStart(): boolean {
    return (
      this.barrier === null &&
      this.heldHead === this.held.length &&
      this.unfinished < this.window &&
      this.queuedBytes + this.socket.writableLength < MAX_PENDING_WRITE_BYTES
    );
  }

  /** Keeps an enqueued request back until the window has room; startHeld() starts it then. */
  protected hold(req: InFlight): void {
    this.held.push(req);
  }

  /** Starts a request that was held (its protocol knows how). */
  protected abstract startHeld(req: InFlight): void;

  /** Makes `req` (started, not answered yet) a barrier: requests after it start once it answers. */
  protected barrierOn(req: InFlight): void {
    this.barrier = req;
    req.afterFinish = this.releaseBarrier;
  }

  private startOrWait(req: InFlight): void {
    if (this.barrier !== null) this.afterBarrier.push(req);
    else this.startHeld(req);
  }

  /** The barrier answered: start what waited for it, in order, until the next barrier. */
  private readonly releaseBarrier = (): void => {
    this.barrier = null;
    let i = 0;
    while (i < this.afterBarrier.length && this.barrier === null && !this.gone) this.startHeld(this.afterBarrier[i++]!);
    this.afterBarrier.splice(0, i);
    // Commands may have been sent outside a socket read (an AUTH checked on the thread pool): publish them.
    if (i > 0) this.host.afterDispatch();
  };

  /** Starts held requests while the window has room; true when it started any. */
  private release(): boolean {
    let started = false;
    while (
      this.heldHead < this.held.length &&
      this.unfinished - (this.held.length - this.heldHead) < this.window &&
      this.queuedBytes + this.socket.writableLength < MAX_PENDING_WRITE_BYTES &&
      !this.cut &&
      !this.closed
    ) {
      const req = this.held[this.heldHead]!;
      this.held[this.heldHead++] = DONE;
      this.startOrWait(req);
      started = true;
    }
    if (this.heldHead === this.held.length && this.heldHead > 0) {
      this.held.length = 0;
      this.heldHead = 0;
    }
    return started;
  }

  private onEnd(): void {
    // The client half-closed. A partial request can never complete now.
    if (this.partial && !this.ending) {
      this.fatal(this.truncatedAnswer());
      return;
    }
    this.ending = true;
    this.markDirty();
  }

  /** Queues a final answer and closes after the answers before it are written. */
  protected fatal(answer: Uint8Array): void {
    const req = new Ready(this);
    this.enqueue(req);
    this.ending = true;
    req.closeAfter = true;
    req.finish(answer);
  }

  /**
   * A request's answer grew by `bytes` (a shard's result arrived; or, at
   * finish, the encoded answer replaced what was charged: may be negative).
   * Past the hard limit the connection is closed: its client asked for more
   * than it reads.
   */
  charge(bytes: number): void {
    this.queuedBytes += bytes;
    if (this.queuedBytes + this.socket.writableLength > this.host.maxOutputBytes && !this.cut)
      this.cutOff(
        "client-output-limit",
        "closing a client connection over its output limit (it does not read its answers)",
      );
  }

  traceEnded(_req: InFlight): void {
    this.tracedInFlight--;
  }

  /** Which port this connection came in on, for the slow log. */
  protected abstract get portName(): string;

  /** The client's name (RESP CLIENT SETNAME), for the slow log. */
  protected get clientName(): string {
    return "";
  }

  /** A request's answer is made: one clock read, and an entry in the slow log if it was slow. */
  timed(req: InFlight): void {
    const log = this.host.dispatcher.slowlog;
    if (log.slowerThanUs < 0) return; // off: not even the clock read
    const us = (traceClock() - req.receivedAt) * 1000;
    if (!log.isSlow(us)) return;
    log.add({
      timeMs: Math.round(req.receivedAt),
      durationUs: Math.round(us),
      args: req.describe(),
      client: `${this.socket.remoteAddress}:${this.socket.remotePort}`,
      clientName: this.clientName,
      port: this.portName,
      spans: req.trace === null ? null : req.trace.ordered(),
    });
  }

  requestDone(bytes: number, answerBytes: number, commands: number): void {
    this.unfinished -= commands;
    // The window follows the answers' size (a moving average over about eight answers).
    this.answerBytes += (answerBytes / commands - this.answerBytes) / 8;
    this.window = Math.min(
      MAX_INFLIGHT_PER_CONNECTION,
      Math.max(DISPATCH_WINDOW_MIN, Math.floor(DISPATCH_WINDOW_BYTES / Math.max(this.answerBytes, 1))),
    );
    this.charge(bytes);
    this.markDirty();
  }

  /** Asks for a flush at the end of this turn. */
  private markDirty(): void {
    if (!this.dirty) {
      this.dirty = true;
      this.host.markDirty(this);
    }
  }

  /**
   * Closes the connection at once for breaking limit `limit`: the socket and
   * what it holds are dropped now (no final answer: the client is not
   * reading, or must not be read from any more); answers still to come for
   * its requests are dropped as they arrive.
   */
  protected cutOff(limit: string, message: string, detail: object = {}): void {
    if (this.cut || this.closed) return;
    this.cut = true;
    this.ending = true;
    this.host.limitHit(limit, message, {
      remote: `${this.socket.remoteAddress}:${this.socket.remotePort}`,
      heldBytes: this.heldBytes,
      pending: this.pending,
      ...detail,
    });
    this.socket.destroy();
    this.markDirty(); // the next flush drops the queue
  }

  /**
   * The soft limit over time (`--client-output-stall-ms`), called by the node
   * every CLIENT_OUTPUT_CHECK_INTERVAL_MS: over MAX_PENDING_WRITE_BYTES, and
   * not one byte taken by the client since the last check, for that long.
   */
  checkStalled(nowMs: number): void {
    if (this.cut || this.closed) return;
    const waiting = this.socket.writableLength;
    const sent = this.handedBytes - waiting;
    if (waiting === 0 || sent !== this.sentAtCheck || this.queuedBytes + waiting < MAX_PENDING_WRITE_BYTES) {
      this.sentAtCheck = sent;
      this.stalledSinceMs = 0;
      return;
    }
    if (this.stalledSinceMs === 0) this.stalledSinceMs = nowMs;
    else if (nowMs - this.stalledSinceMs >= this.host.outputStallMs)
      this.cutOff("client-output-stall", "closing a client connection that has read none of its answers", {
        stalledMs: nowMs - this.stalledSinceMs,
      });
  }

  /** Writes the complete prefix of the queue, in order. Called once per IO turn. */
  flush(): void {
    this.dirty = false;
    if (this.closed || this.cut) {
      this.queue.length = 0;
      this.queueHead = 0;
      this.queuedBytes = 0;
      this.held.length = 0;
      this.heldHead = 0;
      return;
    }
    const q = this.queue;
    const from = this.queueHead;
    let i = from;
    let close = false;
    let bytes = 0;
    while (i < q.length && q[i]!.out !== null && !close) {
      bytes += q[i]!.out!.length;
      close = q[i]!.closeAfter;
      i++;
    }
    if (i - from === 1) {
      this.socket.write(q[from]!.out!);
    } else if (bytes > COALESCE_MAX_BYTES) {
      // Large answers: copying them together would cost more than the syscalls.
      this.socket.cork();
      for (let j = from; j < i; j++) this.socket.write(q[j]!.out!);
      this.socket.uncork();
    } else if (i > from) {
      // Many small answers: one buffer, one write, one syscall. (cork + many
      // writes costs a writev of many tiny iovecs plus a callback each.)
      const out = Buffer.allocUnsafe(bytes);
      let at = 0;
      for (let j = from; j < i; j++) {
        out.set(q[j]!.out!, at);
        at += q[j]!.out!.length;
      }
      this.socket.write(out);
    }
    this.queuedBytes -= bytes;
    this.handedBytes += bytes;
    for (let j = from; j < i; j++) q[j] = DONE;
    if (i === q.length) {
      q.length = 0;
      i = 0;
    } else if (i > 1024 && i * 2 > q.length) {
      q.splice(0, i);
      i = 0;
    }
    this.queueHead = i;
    if (close || (this.ending && this.pending === 0)) {
      this.ending = true;
      this.endSocket();
      return;
    }
    // Answers went out: held requests may start now (their commands are published at the end of the turn).
    if (this.heldHead < this.held.length && this.release()) this.host.afterDispatch();
    this.updateReading();
  }

  /** Pauses or resumes reading the socket per the backpressure rules above. */
  updateReading(): void {
    if (this.closed || this.cut) return;
    const want =
      this.dropInput ||
      (!this.ending &&
        !this.host.readingBlocked() &&
        this.heldHead === this.held.length &&
        this.pending < MAX_INFLIGHT_PER_CONNECTION &&
        this.queuedBytes + this.socket.writableLength < MAX_PENDING_WRITE_BYTES);
    if (want === this.reading) return;
    this.reading = want;
    if (want) this.socket.resume();
    else this.socket.pause();
  }
}

/**
 * What a socket still has to hand to the kernel. `buffered` (its
 * `writableLength`) drops only when a whole write completes, and a corked
 * batch of answers is one write of megabytes; `queued`, the handle's
 * `writeQueueSize` (libuv's count, which Node keeps on its TCP and TLS
 * handles: not a documented API), drops as the kernel takes each part of
 * the write under way.
 */
export interface Unsent {
  buffered: number;
  queued: number;
}

export function unsent(socket: Socket): Unsent {
  const handle = (socket as unknown as { _handle?: { writeQueueSize?: number } | null })._handle;
  return { buffered: socket.writableLength, queued: handle?.writeQueueSize ?? 0 };
}

/** Whether the client took some of it between the two looks (a new write under way raises `queued`: not taken). */
export function taken(before: Unsent, now: Unsent): boolean {
  return now.buffered < before.buffered || now.queued < before.queued;
}

/** Above this many bytes, answers are written one by one instead of copied into one buffer. */
const COALESCE_MAX_BYTES = 256 * 1024;

const DONE = new Ready({ requestDone() {}, charge() {}, gone: true });
