/**
 * Op.WATCH on a shard: read the changes after a position from the shard's
 * history (history.ts), or, when there are none yet, park the read and
 * answer it once a matching change arrives (a long poll). The host (the
 * worker, or the inline backend) calls wake() after each batch, before its
 * answers are published: a change reaches a watcher only in the publish
 * that also makes its write durable (the journal commits first).
 *
 * Parked reads are bounded: each is answered empty after WATCH_PARK_MS (the
 * IO thread asks again if its watcher is still there, so a watcher that
 * went away costs nothing for long), and at most WATCH_MAX_PARKED are held
 * (past it the oldest is answered empty at once).
 */
import { ErrorCode } from "../errors.js";
import { WATCH_MAX_PARKED, WATCH_PARK_MS, WATCH_READ_MAX_BYTES } from "../limits.js";
import { type CommandView, Result, WATCH_EXACT, WATCH_NO_PARK } from "./command.js";
import type { History } from "./history.js";

interface Parked {
  tag: number;
  prefix: Uint8Array;
  exact: boolean;
  after: number;
  maxBytes: number;
  untilMs: number;
}

export class WatchReads {
  private parked: Parked[] = [];
  private readonly out = new Result();
  /** The history's last seq when the parked reads were last looked at. */
  private seenSeq = 0;

  constructor(readonly history: History) {}

  get parkedCount(): number {
    return this.parked.length;
  }

  /**
   * An Op.WATCH: fills `r` and returns true when it is answered now; false
   * when it was parked (no answer yet: the host writes nothing for it).
   */
  read(c: CommandView, r: Result, nowMs: number): boolean {
    this.history.keep();
    const exact = (c.flags & WATCH_EXACT) !== 0;
    if (c.arg0 < 0) {
      // "From now": the position after the last change, nothing else.
      r.num = this.history.lastSeq;
      r.version = this.history.oldestSeq;
      return true;
    }
    const maxBytes = c.arg1 > 0 ? Math.min(c.arg1, WATCH_READ_MAX_BYTES) : WATCH_READ_MAX_BYTES;
    if (this.answer(c.arg0, c.key, exact, maxBytes, r)) return true;
    if ((c.flags & WATCH_NO_PARK) !== 0) return true;
    if (this.parked.length >= WATCH_MAX_PARKED) {
      // The oldest parked read is answered empty now; its watcher simply asks again.
      this.pushedOut.push(this.parked.shift()!);
    }
    this.parked.push({
      tag: c.tag,
      prefix: c.key.slice(),
      exact,
      after: r.num,
      maxBytes,
      untilMs: nowMs + WATCH_PARK_MS,
    });
    return false;
  }

  /** Parked reads pushed out by the cap, answered empty at the next wake(). */
  private pushedOut: Parked[] = [];

  /**
   * Fills `r` with the changes after `after` matching the prefix; true when
   * it found any (or the position is compacted): an answer to send now.
   * Otherwise r.num is where to wait from.
   */
  private answer(after: number, prefix: Uint8Array, exact: boolean, maxBytes: number, r: Result): boolean {
    return answerFromHistory(this.history, after, prefix, exact, maxBytes, r, true);
  }

  /**
   * Answers the parked reads that have matching changes now, or whose time
   * ran out (empty), through `emit` (the Result is reused: encode it at once).
   */
  wake(nowMs: number, emit: (r: Result) => void): void {
    const r = this.out;
    for (const p of this.pushedOut) {
      r.reset(p.tag);
      r.num = p.after; // empty: asked again from where it was
      r.version = this.history.oldestSeq;
      emit(r);
    }
    this.pushedOut.length = 0;
    if (this.parked.length === 0) {
      this.seenSeq = this.history.lastSeq;
      return;
    }
    const changed = this.history.lastSeq !== this.seenSeq;
    this.seenSeq = this.history.lastSeq;
    let kept = 0;
    for (const p of this.parked) {
      r.reset(p.tag);
      if (changed && this.answer(p.after, p.prefix, p.exact, p.maxBytes, r)) {
        emit(r);
        continue;
      }
      if (changed) p.after = r.num; // nothing of its keys: wait from here
      if (nowMs >= p.untilMs) {
        r.reset(p.tag);
        r.num = p.after;
        r.version = this.history.oldestSeq;
        emit(r);
        continue;
      }
      this.parked[kept++] = p;
    }
    this.parked.length = kept;
  }

  /** The changes after `seq` were taken back (history.rollback): parked reads wait from no later than it. */
  rollback(seq: number): void {
    this.history.rollback(seq);
    for (const p of this.parked) if (p.after > seq) p.after = seq;
    if (this.seenSeq > seq) this.seenSeq = seq;
  }

  /** Whether wake() has anything to do (a change since, a cap overflow, or a deadline due at `nowMs`). */
  due(nowMs: number): boolean {
    if (this.pushedOut.length > 0) return true;
    if (this.parked.length === 0) return false;
    // Parked in arrival order, each for WATCH_PARK_MS: the first is the first due.
    return this.history.lastSeq !== this.seenSeq || nowMs >= this.parked[0]!.untilMs;
  }
}

/**
 * Fills `r` with the changes of `h` after `after` matching the prefix; true
 * when it found any, or the position is compacted: an answer to send now.
 * Otherwise r.num is where to wait from. A position beyond the last change
 * is one this history never handed out: on a single node another run's
 * (`futureIsCompacted`); on a cluster replica, one a faster replica handed
 * out, which this one has not applied yet (nothing new here, yet).
 */
export function answerFromHistory(
  h: History,
  after: number,
  prefix: Uint8Array,
  exact: boolean,
  maxBytes: number,
  r: Result,
  futureIsCompacted: boolean,
): boolean {
  r.version = h.oldestSeq;
  if (after > h.lastSeq) {
    r.num = futureIsCompacted ? h.lastSeq : after;
    if (!futureIsCompacted) return false;
    r.status = ErrorCode.COMPACTED;
    return true;
  }
  const got = h.read(after, prefix, exact, maxBytes);
  if (got === null) {
    r.status = ErrorCode.COMPACTED;
    r.num = h.lastSeq;
    return true;
  }
  r.num = got.next;
  if (got.count === 0) return false;
  r.flag = 1;
  r.value = got.bytes;
  return true;
}

/** An Op.WATCH answered at once, never parked (a cluster replica's partitions: src/cluster/partition-machine.ts). */
export function answerWatchNow(h: History, c: CommandView, r: Result): void {
  if (c.arg0 < 0) {
    r.num = h.lastSeq;
    r.version = h.oldestSeq;
    return;
  }
  const maxBytes = c.arg1 > 0 ? Math.min(c.arg1, WATCH_READ_MAX_BYTES) : WATCH_READ_MAX_BYTES;
  answerFromHistory(h, c.arg0, c.key, (c.flags & WATCH_EXACT) !== 0, maxBytes, r, false);
}
