/**
 * One client socket on the native protocol: bytes in, frames out of the
 * framer, requests into the dispatcher, answers back in request order.
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
 * Bad input. A frame whose content is garbage gets a MALFORMED_FRAME answer
 * and the connection goes on. A frame whose segment table is garbage or too
 * large cannot be skipped: the connection gets a final error and is closed
 * after the answers before it are written. Other connections never notice.
 */
import type { Socket } from "node:net";
import { ErrorCode } from "../errors.js";
import { MAX_INFLIGHT_PER_CONNECTION, MAX_PENDING_WRITE_BYTES } from "../limits.js";
import { decodeRequest, encodeError } from "../protocol/codec.js";
import { FrameReader } from "../protocol/framing.js";
import { InFlight, type RequestOwner } from "./dispatch.js";

export interface ConnectionHost {
  readonly maxValueBytes: number;
  readonly maxFrameBytes: number;
  /** Paused by shard congestion or shutdown. */
  readingBlocked(): boolean;
  dispatch(req: InFlight, nowMs: number): void;
  /** This connection has answers ready to write at the end of the turn. */
  markDirty(conn: Connection): void;
  closed(conn: Connection): void;
  log(level: "debug" | "info" | "warn", message: string, detail?: object): void;
}

export class Connection implements RequestOwner {
  private readonly queue: InFlight[] = [];
  private queueHead = 0;
  private readonly framer: FrameReader;
  private reading = true;
  /** An unrecoverable stream error was answered; close once the queue drains. */
  private ending = false;
  closed = false;
  private dirty = false;

  constructor(
    readonly socket: Socket,
    private readonly host: ConnectionHost,
  ) {
    this.framer = new FrameReader(host.maxFrameBytes);
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("end", () => this.onEnd());
    socket.on("drain", () => this.updateReading());
    socket.on("error", (err) => host.log("debug", "socket error", { err: err.message }));
    socket.on("close", () => {
      this.closed = true;
      host.closed(this);
    });
  }

  /** Requests received and not yet answered. */
  get pending(): number {
    return this.queue.length - this.queueHead;
  }

  private onData(chunk: Buffer): void {
    if (this.ending) return;
    const nowMs = Date.now();
    this.framer.push(chunk, (frame) => {
      const req = new InFlight(this, decodeRequest(frame, this.host.maxValueBytes));
      this.queue.push(req);
      this.host.dispatch(req, nowMs);
    });
    const error = this.framer.error;
    if (error !== null) {
      this.host.log("info", "closing connection on a bad frame", { code: error.code, message: error.message });
      this.fatal(
        error.code === "FRAME_TOO_LARGE" ? ErrorCode.FRAME_TOO_LARGE : ErrorCode.MALFORMED_FRAME,
        error.message,
      );
    }
    this.updateReading();
  }

  private onEnd(): void {
    // The client half-closed. A partial frame can never complete now.
    if (this.framer.partial && !this.ending) {
      this.fatal(ErrorCode.MALFORMED_FRAME, "truncated frame: the stream ended inside a frame");
      return;
    }
    this.ending = true;
    this.requestDone();
  }

  /** Answers with a final error (id 0: no frame to take an id from) and closes after earlier answers. */
  private fatal(code: number, message: string): void {
    const req = new InFlight(this, {} as never);
    req.out = encodeError(0n, code, message);
    this.queue.push(req);
    this.ending = true;
    this.requestDone();
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
    let i = this.queueHead;
    if (i < q.length && q[i]!.out !== null) {
      const s = this.socket;
      s.cork();
      while (i < q.length && q[i]!.out !== null) {
        s.write(q[i]!.out!);
        q[i] = DONE;
        i++;
      }
      s.uncork();
    }
    if (i === q.length) {
      q.length = 0;
      i = 0;
    } else if (i > 1024 && i * 2 > q.length) {
      q.splice(0, i);
      i = 0;
    }
    this.queueHead = i;
    if (this.ending && this.pending === 0) {
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

const DONE = new InFlight({ requestDone() {} }, {} as never);
