/**
 * Logging a limit being hit, without letting the hits flood the log.
 *
 * Every limit in src/limits.ts is logged when it is hit (the operator must be
 * able to see why a client was cut off). But the clients that hit limits are
 * often the ones that hit them in a loop: a flood of 10,000 connections over
 * the cap, or a broken client reconnecting and overflowing again, would write
 * one line each and turn the log itself into the resource being exhausted.
 *
 * So each limit (by name) writes its first hit at once, then at most one line
 * per LIMIT_LOG_INTERVAL_MS, which says how many hits were left out since the
 * previous line. Memory is one small record per limit name: names are a
 * fixed vocabulary of the code, never built from client input.
 */
import { LIMIT_LOG_INTERVAL_MS } from "./limits.js";

export type LimitLevel = "info" | "warn";
export type LimitLogSink = (level: LimitLevel, message: string, detail: object) => void;

interface LimitState {
  lastMs: number;
  suppressed: number;
}

export class LimitLog {
  private readonly states = new Map<string, LimitState>();

  constructor(
    private readonly sink: LimitLogSink,
    private readonly intervalMs = LIMIT_LOG_INTERVAL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Limit `limit` was hit: log `message` with `detail` unless this limit
   * logged within the interval. "warn" when someone was refused or cut off;
   * "info" for backpressure (nothing refused, only slowed down).
   */
  hit(limit: string, message: string, detail: object = {}, level: LimitLevel = "warn"): void {
    const nowMs = this.now();
    let s = this.states.get(limit);
    if (s === undefined) {
      s = { lastMs: -Infinity, suppressed: 0 };
      this.states.set(limit, s);
    }
    if (nowMs - s.lastMs < this.intervalMs) {
      s.suppressed++;
      return;
    }
    const suppressed = s.suppressed;
    s.lastMs = nowMs;
    s.suppressed = 0;
    this.sink(
      level,
      message,
      suppressed > 0 ? { limit, ...detail, suppressedSinceLastLine: suppressed } : { limit, ...detail },
    );
  }
}
