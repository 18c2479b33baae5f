// A limit's hits are logged without flooding the log: the first at once,
// then one line per interval per limit, saying how many were left out.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LimitLog } from "../../src/limit-log.js";

describe("LimitLog", () => {
  it("logs a limit's first hit, then at most one line per interval with the hits left out; limits are apart", () => {
    let now = 1_000;
    const lines: { level: string; message: string; detail: Record<string, unknown> }[] = [];
    const log = new LimitLog(
      (level, message, detail) => lines.push({ level, message, detail: { ...detail } }),
      10_000,
      () => now,
    );
    for (let i = 0; i < 1000; i++) log.hit("max-connections", "refused", { n: i });
    log.hit("client-output-limit", "cut", {}, "warn");
    log.hit("backlog", "paused", {}, "info");
    assert.deepEqual(
      lines.map((l) => [l.detail.limit, l.level, l.detail.n, l.detail.suppressedSinceLastLine]),
      [
        ["max-connections", "warn", 0, undefined],
        ["client-output-limit", "warn", undefined, undefined],
        ["backlog", "info", undefined, undefined],
      ],
    );
    now += 9_999;
    log.hit("max-connections", "refused", { n: 1000 });
    assert.equal(lines.length, 3, "still inside the interval");
    now += 1;
    log.hit("max-connections", "refused", { n: 1001 });
    assert.equal(lines.length, 4);
    assert.deepEqual(lines[3]!.detail, { limit: "max-connections", n: 1001, suppressedSinceLastLine: 1000 });
  });
});
