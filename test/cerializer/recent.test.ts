// The Live chart's figures (src/cerializer/recent.ts): the last whole
// wall-clock second's requests, errors and latency percentiles, on a clock the
// test moves. A table of steps: record requests at given times, then read.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isDataRoute, RecentRequests } from "../../src/cerializer/recent.js";

describe("RecentRequests: the last whole second", () => {
  it("reports the second before now: its count, errors and percentiles", () => {
    let now = 10_000; // second 10 starts
    const r = new RecentRequests(() => now);
    assert.deepEqual(r.lastSecond(), {
      startMs: 9_000,
      requests: 0,
      errors: 0,
      p50Ms: 0,
      p90Ms: 0,
      p99Ms: 0,
      maxMs: 0,
    });
    // Second 10: 100 requests of 1..100 ms, two of them failed.
    for (let i = 1; i <= 100; i++) {
      now = 10_000 + i * 9;
      r.record(i, i === 50 || i === 100);
    }
    assert.equal(r.lastSecond().requests, 0, "second 10 is not over yet");
    now = 11_000;
    const s = r.lastSecond();
    assert.equal(s.startMs, 10_000);
    assert.equal(s.requests, 100);
    assert.equal(s.errors, 2);
    // HDR histogram, 2 significant digits: within 1%.
    for (const [got, want] of [
      [s.p50Ms, 50],
      [s.p90Ms, 90],
      [s.p99Ms, 99],
      [s.maxMs, 100],
    ] as const)
      assert.ok(Math.abs(got - want) <= want * 0.01, `${got} ~ ${want}`);
  });

  it("an idle second reads as empty, not as the last busy one", () => {
    let now = 20_000;
    const r = new RecentRequests(() => now);
    r.record(5, false);
    now = 21_500;
    assert.equal(r.lastSecond().requests, 1, "second 20");
    now = 23_100; // seconds 21 and 22 had nothing
    const s = r.lastSecond();
    assert.equal(s.startMs, 22_000);
    assert.equal(s.requests, 0);
    assert.equal(s.p99Ms, 0);
  });

  it("counts data routes only (the console's own polling is left out)", () => {
    for (const route of ["/v1/kv/:key", "/v1/kv", "/v1/batch", "/v1/txn", "/v1/rpc"])
      assert.ok(isDataRoute(route), route);
    for (const route of ["/v1/stats", "/v1/cluster", "/metrics", "/ui", "/ui/:file", "/v1/watch", "unmatched"])
      assert.ok(!isDataRoute(route), route);
  });
});
