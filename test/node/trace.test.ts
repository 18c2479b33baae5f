// Request tracing on a single node (docs/tracing.md): a traced request's
// answer comes with its timeline, stage by stage, from the native client,
// the CLI's --trace, and refusals for what cannot be traced. One durable node
// (--fsync always, two workers) for the whole file.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import type { PiccoloClient, RequestTrace } from "../../src/client/client.js";
import { ErrorCode, type PiccoloError } from "../../src/errors.js";
import { TRACE_MAX_IN_FLIGHT_PER_CONNECTION } from "../../src/limits.js";
import { Response_Which } from "../../src/protocol/gen/piccolo.js";
import { CLI, type RunningNode, startNode } from "../support/node.js";

let node: RunningNode;
let c: PiccoloClient;

/** The spans are ordered by start, none negative, and each stage named appears. */
function checkTimeline(t: RequestTrace, stages: string[]): void {
  assert.equal(t.node, "node");
  let last = 0;
  for (const s of t.spans) {
    assert.ok(s.startUs >= 0 && s.durationUs >= 0, JSON.stringify(s));
    assert.ok(s.startUs >= last, `spans in order: ${JSON.stringify(t.spans)}`);
    last = s.startUs;
  }
  assert.deepEqual(
    stages.filter((x) => !t.spans.some((s) => s.stage === x)),
    [],
    `every stage present in ${JSON.stringify(t.spans)}`,
  );
  assert.equal(t.spans[0]!.stage, "received");
  assert.equal(t.spans.at(-1)!.stage, "encoded");
}

describe("request tracing, single node", () => {
  before(async () => {
    node = await startNode(["--shards", "2", "--fsync", "always"]);
    c = await node.client();
  });
  after(async () => {
    await c.close();
    await node.stop();
  });

  it("a traced put and get answer their timelines; the put's names its fsync; untraced ones none", async () => {
    await c.put("plain", "x");
    assert.equal(c.lastTrace, null, "an untraced request has no trace");
    await c.put("k", "v1", { trace: true });
    const put = c.lastTrace!;
    checkTimeline(put, ["received", "routed", "ring", "executed", "journal", "notify", "encoded"]);
    const journal = put.spans.find((s) => s.stage === "journal")!;
    assert.match(journal.where, /^worker [01]$/);
    assert.match(journal.detail, /fsync always/);
    assert.match(put.spans.find((s) => s.stage === "routed")!.detail, /^put to worker [01]$/);

    const e = await c.get("k", { trace: true });
    assert.equal(e?.value.toString(), "v1");
    const get = c.lastTrace!;
    assert.notEqual(get.id, put.id);
    checkTimeline(get, ["received", "routed", "ring", "executed", "notify", "encoded"]);
    assert.ok(!get.spans.some((s) => s.stage === "journal"), "a read waits for no journal");
    assert.ok(get.roundTripUs > 0);
  });

  it("an mget traces each key's trip; a ping only the IO thread's part", async () => {
    await c.mget(["a", "b", "c", "d"], { trace: true });
    const t = c.lastTrace!;
    assert.equal(t.spans.filter((s) => s.stage === "executed").length, 4);
    checkTimeline(t, ["received", "routed", "ring", "executed", "notify", "encoded"]);
    const traced = await node.client({ trace: true });
    try {
      await traced.ping();
      checkTimeline(traced.lastTrace!, ["received", "encoded"]);
      assert.equal(traced.lastTrace!.spans.length, 2);
    } finally {
      await traced.close();
    }
  });

  it("refuses to trace a stream, and more than the limit of traced requests in flight", async () => {
    const res = await c.raw((r) => {
      r._initWatch()._initKey(1).copyBuffer(new TextEncoder().encode("k"));
      r.trace = true;
    });
    assert.equal(res.which(), Response_Which.ERROR);
    assert.equal(res.error.code, ErrorCode.INVALID_ARGUMENT);
    assert.match(res.error.message, /a watch cannot be traced: its answer is a stream/);

    // Sent in one write: the node reads them before any is answered.
    const n = TRACE_MAX_IN_FLIGHT_PER_CONNECTION * 3;
    const all = await Promise.allSettled(Array.from({ length: n }, (_, i) => c.put(`t${i}`, "v", { trace: true })));
    const refused = all.filter((r) => r.status === "rejected");
    assert.ok(refused.length > 0, "some were refused");
    for (const r of refused) {
      const err = (r as PromiseRejectedResult).reason as PiccoloError;
      assert.equal(err.code, ErrorCode.INVALID_ARGUMENT);
      assert.match(err.message, /too many traced requests in flight on this connection \(at most 64\)/);
    }
    assert.ok(all.filter((r) => r.status === "fulfilled").length >= TRACE_MAX_IN_FLIGHT_PER_CONNECTION);
    // The connection goes on, tracing again once they are answered.
    await c.get("k", { trace: true });
    checkTimeline(c.lastTrace!, ["received", "executed"]);
  });

  it("piccolo get --trace prints the answer, then a waterfall", () => {
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [CLI, ...args, "--server", `127.0.0.1:${node.port}`], {
        encoding: "utf8",
        timeout: 20_000,
      });
    const r = cli("get", "k", "--trace");
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.equal(lines[0], "v1");
    assert.match(lines[1]!, /^trace of request \d+, answered by node: 6 spans, [\d.]+ (µs|ms) from receipt to answer$/);
    assert.match(lines[2]!, /^ {2}stage +where +start +duration +\| +\| +detail$/);
    assert.match(lines[3]!, /^ {2}received +io +0 µs +[\d.]+ (µs|ms) +\|█+ *\| +native request, \d+ bytes/);
    for (const [i, stage] of ["routed", "ring", "executed", "notify", "encoded"].entries())
      assert.match(
        lines[4 + i]!,
        new RegExp(`^ {2}${stage} +(io|worker [01]) +[\\d.]+ (µs|ms) +[\\d.]+ (µs|ms) +\\| *█+ *\\|`),
      );
    assert.match(lines[9]!, /^ {2}round trip seen by the client: [\d.]+ (µs|ms)/);
    // The verb form is the same; a missing key still prints its timeline, with exit code 1.
    const miss = cli("trace", "get", "absent");
    assert.equal(miss.status, 1);
    assert.match(miss.stdout, /^trace of request/m);
    const watch = cli("watch", "k", "--trace");
    assert.equal(watch.status, 2);
    assert.match(watch.stderr, /watch cannot be traced: its answer is a stream/);
  });
});
