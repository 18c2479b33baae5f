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
 *   - its unsent answers exceed MAX_PENDING_WRITE_BYTES (a slow reader), or
 *   - a shard's ring is congested (the server pauses everyone),
 * and resumes when the condition clears. TCP flow control then slows the
 * client down; nothing is ever discarded.
 *
 * Bad input that the parser can step over gets an error answer and the
 * connection goes on. A stream that cannot be resynchronised gets a final
 * error answer (fatal()) and is closed after the answers before it are
 * written. Other connections never notice.
 */
import type { Socket } from "node:net";
import { MAX_INFLIGHT_PER_CONNECTION, MAX_PENDING_WRITE_BYTES } from "../limits.js";
import type { Result } from "../shard/command.js";
import { type Dispatcher, InFlight, type RequestOwner } from "./dispatch.js";

export interface ConnectionHost {
  readonly maxValueBytes: number;
  readonly maxFrameBytes: number;
  readonly dispatcher: Dispatcher;
  /** Password clients must present (native AUTH, RESP AUTH); null when none. */
  readonly requirePass: string | null;
  /** Paused by shard congestion or shutdown. */
  readingBlocked(): boolean;
  /** Commands were sent: publish the rings at the end of this turn, watch congestion. */
  afterDispatch(): void;
  /** This connection has answers ready to write at the end of the turn. */
  markDirty(conn: Connection): void;
  closed(conn: Connection): void;
  log(level: "debug" | "info" | "warn", message: string, detail?: object): void;
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

  constructor(
    readonly socket: Socket,
    protected readonly host: ConnectionHost,
  ) {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      if (this.ending) return;
      this.onBytes(chunk, Date.now());
      this.host.afterDispatch();
      this.updateReading();
    });
    socket.on("end", () => this.onEnd());
    socket.on("drain", () => this.updateReading());
    socket.on("error", (err) => host.log("debug", "socket error", { err: err.message }));
    socket.on("close", () => {
      this.closed = true;
      host.closed(this);
    });
  }

  /** Parses bytes into requests: enqueue() each, then start it. */
  protected abstract onBytes(chunk: Buffer, nowMs: number): void;

  /** True when the peer's stream stopped inside a request. */
  protected abstract get partial(): boolean;

  /** The final answer for a stream that ended inside a request. */
  protected abstract truncatedAnswer(): Uint8Array;

  /** Requests received and not yet answered. */
  get pending(): number {
    return this.queue.length - this.queueHead;
  }

  /** Appends a request to the answer queue (before starting it: inline shards answer at once). */
  protected enqueue(req: InFlight): void {
    this.queue.push(req);
  }

  private onEnd(): void {
    // The client half-closed. A partial request can never complete now.
    if (this.partial && !this.ending) {
      this.fatal(this.truncatedAnswer());
      return;
    }
    this.ending = true;
    this.requestDone();
  }

  /** Queues a final answer and closes after the answers before it are written. */
  protected fatal(answer: Uint8Array): void {
    const req = new Ready(this);
    this.queue.push(req);
    this.ending = true;
    req.closeAfter = true;
    req.finish(answer);
  }

  requestDone(): void {
    if (!this.dirty) {
      this.dirty = true;
      this.host.markDirty(this);
    }
  }

  /** Writes the complete prefix of the queue, in order. Called once per IO turn. */
  flush(): void {
    this.dirty = false;
    if (this.closed) {
      this.queue.length = 0;
      this.queueHead = 0;
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
      this.socket.end();
      return;
    }
    this.updateReading();
  }

  /** Pauses or resumes reading the socket per the backpressure rules above. */
  updateReading(): void {
    if (this.closed) return;
    const want =
      !this.ending &&
      !this.host.readingBlocked() &&
      this.pending < MAX_INFLIGHT_PER_CONNECTION &&
      this.socket.writableLength < MAX_PENDING_WRITE_BYTES;
    if (want === this.reading) return;
    this.reading = want;
    if (want) this.socket.resume();
    else this.socket.pause();
  }
}

/** Above this many bytes, answers are written one by one instead of copied into one buffer. */
const COALESCE_MAX_BYTES = 256 * 1024;

const DONE = new Ready({ requestDone() {} });
