/**
 * The gateway's data requests over the last whole second: how many, how
 * many failed (5xx: the store could not do it), and latency percentiles.
 * GET /v1/stats returns it as `gateway.lastSecond`; the web console's Live
 * chart polls that once a second (docs/console.md).
 *
 * Windows are aligned to wall-clock seconds and rotated when a request or a
 * read arrives in a later one, so no timer runs and an idle gateway reports
 * an empty second, not a stale one. Memory is fixed: one HDR histogram per
 * window (microseconds, 2 significant digits), reset and reused.
 * Prometheus's histogram at /metrics has the same requests, cumulative and in
 * coarse buckets; this one is for a person watching a chart.
 */
import hdr from "hdr-histogram-js";

export interface SecondSummary {
  /** The second's start, Unix ms. */
  startMs: number;
  requests: number;
  /** Answered 5xx. */
  errors: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Routes that carry data; the console's own polling (stats, cluster, metrics, the UI) is left out. */
export function isDataRoute(route: string): boolean {
  return route.startsWith("/v1/kv") || route === "/v1/batch" || route === "/v1/txn" || route === "/v1/rpc";
}

export class RecentRequests {
  private readonly hist = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 2,
  });
  private second = 0;
  private requests = 0;
  private errors = 0;
  private last: SecondSummary;

  constructor(private readonly now: () => number = Date.now) {
    this.second = Math.floor(this.now() / 1000);
    this.last = empty(this.second - 1);
  }

  record(durationMs: number, failed: boolean): void {
    this.rotate();
    this.hist.recordValue(Math.max(1, Math.round(durationMs * 1000)));
    this.requests++;
    if (failed) this.errors++;
  }

  /** The last whole second before now. */
  lastSecond(): SecondSummary {
    this.rotate();
    return this.last;
  }

  private rotate(): void {
    const s = Math.floor(this.now() / 1000);
    if (s === this.second) return;
    const ms = (q: number) => (this.requests === 0 ? 0 : this.hist.getValueAtPercentile(q) / 1000);
    this.last =
      s === this.second + 1
        ? {
            startMs: this.second * 1000,
            requests: this.requests,
            errors: this.errors,
            p50Ms: ms(50),
            p90Ms: ms(90),
            p99Ms: ms(99),
            maxMs: this.requests === 0 ? 0 : this.hist.maxValue / 1000,
          }
        : empty(s - 1);
    this.second = s;
    this.requests = 0;
    this.errors = 0;
    this.hist.reset();
  }
}

function empty(second: number): SecondSummary {
  return { startMs: second * 1000, requests: 0, errors: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, maxMs: 0 };
}
