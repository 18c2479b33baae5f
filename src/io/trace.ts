/**
 * Request tracing (docs/tracing.md, decisions 0320-0323): a traced request
 * carries a Trace, and every hop it takes adds a span to it: a stage name,
 * where it ran (the IO thread, a shard's worker, a cluster member), when it
 * began and how long it took, in microseconds from the request's receipt.
 *
 * The clock is `performance.timeOrigin + performance.now()`: monotonic within
 * a thread, sub-microsecond, and comparable across the node's threads (each
 * worker's timeOrigin is its own start, so the sum, not now() alone, is the
 * shared scale). Two threads' clocks may still disagree by a few
 * microseconds; a span that would start before the one it follows is shown
 * from where that one ended, never negative (Trace.add).
 *
 * An untraced request costs one test per hop: `req.trace !== null`.
 */
import { TRACE_MAX_SPANS } from "../limits.js";
import type { TraceSpan } from "../protocol/trace-shapes.js";

export type { TraceOut, TraceSpan } from "../protocol/trace-shapes.js";

/** This thread's time origin: constant, and its getter costs a fifth of a clock read, so it is read once. */
const ORIGIN = performance.timeOrigin;

/** Milliseconds, fractional: comparable across the node's threads (see above). */
export function traceClock(): number {
  return ORIGIN + performance.now();
}

export class Trace {
  readonly spans: TraceSpan[] = [];
  /** Spans left out over TRACE_MAX_SPANS. */
  dropped = 0;
  /** Per command tag in flight: when it was sent and to which shard (Dispatcher). */
  readonly sent = new Map<number, { at: number; shard: number }>();
  /** When the last shard result of the request reached the IO thread (0: none yet). */
  lastResultAt = 0;
  /** When the request was read and parsed. */
  parsedAt: number;
  /** What the request was, for a log (RESP: the command and its first key), taken while its bytes are valid. */
  label = "";

  constructor(
    /** When the bytes holding the request were received (the clock above). */
    readonly t0: number,
  ) {
    this.parsedAt = t0;
  }

  /** Adds a span from `from` to `to` (the clock above, ms); clamped so it never starts before the receipt nor lasts less than 0. */
  add(stage: string, where: string, from: number, to: number, detail = ""): void {
    if (this.spans.length >= TRACE_MAX_SPANS) {
      this.dropped++;
      return;
    }
    const start = Math.max(0, from - this.t0);
    const end = Math.max(start, to - this.t0);
    this.spans.push({
      stage,
      where,
      startUs: Math.round(start * 1000),
      durationUs: Math.round((end - start) * 1000),
      detail,
    });
  }

  /** The spans ordered by start (stable: stages that began together keep the order they were added in). */
  ordered(): TraceSpan[] {
    return this.spans.slice().sort((a, b) => a.startUs - b.startUs);
  }
}
