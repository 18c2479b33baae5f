/**
 * A run: consecutive hot requests of one connection answered as one queued
 * request, their answers written one after another into one buffer
 * (decisions 0318 and 0319). The Redis port's HotRun (src/resp/hot.ts) and
 * the native port's NativeRun (src/io/native-run.ts) are runs; what they
 * share is here: the order check, the buffer, the bounds, and the end.
 *
 * Why a run: under a pipeline, a request of its own costs a queued object,
 * its answer's own bytes, and a copy of them into the connection's write;
 * a run costs one of each for up to HOT_RUN_MAX_COMMANDS requests.
 *
 * Order. A run takes requests only while it is the last request queued on
 * its connection (Connection.isLast), and only on a backend whose results
 * come back in the order their commands were sent (ShardBackend.inOrder):
 * result `part` is always the run's next, which onResult asserts.
 *
 * Limits: at most HOT_RUN_MAX_COMMANDS requests, and no more once the
 * answers pass HOT_RUN_MAX_BYTES; each request counts against the
 * connection's dispatch window as a request of its own (InFlight.commands).
 */
import { assert } from "../assert.js";
import { HOT_RUN_MAX_BYTES, HOT_RUN_MAX_COMMANDS } from "../limits.js";
import type { Result } from "../shard/command.js";
import { smallBytes } from "../small-bytes.js";
import { type Dispatcher, InFlight, type RequestOwner } from "./dispatch.js";

const EMPTY = new Uint8Array(0);
/** The largest first buffer a run is given from a hint (expect()): the largest carved array (src/small-bytes.ts). */
export const RUN_FIRST_MAX_BYTES = 2048;

export abstract class Run extends InFlight {
  /** Requests sent so far (InFlight.commands counts them against the window). */
  sent = 0;
  /** Results answered so far, in order. */
  private answered = 0;
  /** Takes no more requests (something was queued after it, or its bounds were reached). */
  closed = false;
  /** The answers so far: `at` bytes of `buf`. Carved from the shared blocks, so it starts zeroed. */
  protected buf: Uint8Array = EMPTY;
  protected at = 0;
  /** The first buffer's size, made at the first answer (expect() may raise it). */
  private firstBytes: number;

  constructor(owner: RequestOwner, firstBytes: number) {
    super(owner);
    this.commands = 0;
    this.firstBytes = firstBytes;
  }

  /** Bytes of answers this run holds so far (its connection sizes the next run's buffer by it). */
  get answerBytes(): number {
    return this.at;
  }

  /**
   * Sizes the first buffer for about `bytes` of answers: the connection's
   * last run, since a pipelining client tends to send batches alike (16 GETs
   * of 64-byte values answer 1,136 bytes: grown from 256 by doubling, that
   * was four buffers and three copies a batch, the last past the carved size).
   * At most RUN_FIRST_MAX_BYTES; a larger run grows as before.
   */
  expect(bytes: number): void {
    if (this.buf !== EMPTY) return;
    const hinted = (bytes + (bytes >>> 3) + 63) & ~63; // an eighth more, in 64-byte steps
    this.firstBytes = Math.min(Math.max(this.firstBytes, hinted), RUN_FIRST_MAX_BYTES);
  }

  /** Whether the run may take one more request. */
  get open(): boolean {
    return !this.closed && this.sent < HOT_RUN_MAX_COMMANDS && this.at < HOT_RUN_MAX_BYTES;
  }

  /** Counts one more request, sent as part `sent - 1`; returns its place in the run. */
  protected took(): number {
    this.commands++;
    return this.sent++;
  }

  /** No more requests: the run is answered once every result is in (now, if they are). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.remaining === 0 && this.out === null) this.done();
  }

  onResult(part: number, r: Result, _d: Dispatcher): void {
    assert(part === this.answered, "a run's results come back in order");
    this.answered++;
    if (!this.owner.gone) this.answer(part, r);
    if (this.closed && this.remaining === 0) this.done();
  }

  /** Writes the answer to request `part` from its result (the result is valid only during the call). */
  protected abstract answer(part: number, r: Result): void;

  /** Appends `x` to the answers. */
  protected bytes(x: Uint8Array): void {
    this.room(x.length);
    this.buf.set(x, this.at);
    this.at += x.length;
  }

  /** Makes room for `n` more bytes of answers (a grown buffer is a fresh, zeroed one). */
  protected room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    if (this.buf === EMPTY && this.at === 0 && this.out === null) {
      this.buf = smallBytes(Math.max(this.firstBytes, n));
      return;
    }
    let size = Math.max(this.buf.length, 64) * 2;
    while (size < this.at + n) size *= 2;
    const grown = smallBytes(size);
    grown.set(this.buf.subarray(0, this.at));
    this.buf = grown;
  }

  private done(): void {
    const out = this.buf.subarray(0, this.at);
    this.buf = EMPTY;
    this.finish(out);
  }
}
