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
import { redisClient } from "../resp/support.js";
import { type RunningGateway, startGateway } from "../support/cerializer.js";
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
    // Every request goes in the slow log (threshold 0), which keeps 16.
    node = await startNode([
      "--shards",
      "2",
      "--fsync",
      "always",
      "--slowlog-slower-than",
      "0",
      "--slowlog-max-len",
      "16",
    ]);
    c = await node.client();
  });
  after(async () => {
    if (process.env.TRACE_DEBUG) console.log(node.stderr().slice(-3000));
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

  it("RESP: CLIENT TRACING ON traces the next commands, TRACE LAST reads the last; bad arguments are errors", async () => {
    const r = redisClient({ port: node.respPort });
    try {
      assert.equal(await r.call("trace", "last"), null, "nothing traced yet");
      assert.equal(await r.call("client", "tracing", "on"), "OK");
      assert.equal(await r.call("set", "rk", "v"), "OK");
      const last = (await r.call("trace", "last")) as unknown[];
      // RESP2: a map is a flat array of keys and values.
      const m = new Map<string, unknown>();
      for (let i = 0; i < last.length; i += 2) m.set(String(last[i]), last[i + 1]);
      assert.equal(m.get("command"), "set rk");
      assert.equal(m.get("node"), "node");
      const spans = (m.get("spans") as unknown[][]).map((x) => {
        const o: Record<string, unknown> = {};
        for (let i = 0; i < x.length; i += 2) o[String(x[i])] = x[i + 1];
        return o;
      });
      const stages = spans.map((x) => x.stage);
      for (const stage of ["received", "routed", "ring", "executed", "journal", "notify", "encoded"])
        assert.ok(stages.includes(stage), `${stage} in ${stages.join(",")}`);
      assert.match(String(spans.find((x) => x.stage === "journal")!.detail), /fsync always/);
      // TRACE itself is not traced: asking again gives the same timeline.
      assert.deepEqual(await r.call("trace", "last"), last);
      assert.equal(await r.call("client", "tracing", "off"), "OK");
      await r.call("get", "rk");
      assert.deepEqual(await r.call("trace", "last"), last, "an untraced command leaves the last trace");
      await assert.rejects(r.call("client", "tracing", "maybe"), /ERR CLIENT TRACING takes ON or OFF/);
      await assert.rejects(r.call("client", "tracing"), /ERR CLIENT TRACING takes ON or OFF/);
      await assert.rejects(r.call("trace", "first"), /TRACE takes LAST/);
    } finally {
      r.disconnect();
    }
  });

  it("the gateway: ?trace=1 answers JSON with the timeline beside the answer; a bad value is 400", async () => {
    let gw: RunningGateway | null = null;
    try {
      gw = await startGateway([node.port]);
      const put = await gw.fetch("/v1/kv/gk?trace=1", { method: "PUT", body: "hello" });
      assert.equal(put.status, 201);
      const p = (await put.json()) as { version: number; trace: RequestTrace };
      assert.ok(p.version > 0);
      assert.ok(p.trace.spans.some((x) => x.stage === "journal"));
      const get = await gw.fetch("/v1/kv/gk?trace=1");
      assert.equal(get.status, 200);
      const g = (await get.json()) as { value: string; trace: RequestTrace };
      assert.equal(g.value, "hello");
      assert.equal(g.trace.node, "node");
      assert.deepEqual(
        g.trace.spans.map((x) => x.stage),
        ["received", "routed", "ring", "executed", "notify", "encoded"],
      );
      const plain = await gw.fetch("/v1/kv/gk");
      assert.equal(await plain.text(), "hello", "without ?trace the answer is as ever");
      const del = await gw.fetch("/v1/kv/gk?trace=1", { method: "DELETE" });
      assert.equal(del.status, 200);
      assert.equal(((await del.json()) as { deleted: boolean }).deleted, true);
      const slow = (await (await gw.fetch("/v1/slowlog?count=3")).json()) as {
        nodes: { slowlog: { entries: { args: string[] }[] } }[];
      };
      assert.equal(slow.nodes[0]!.slowlog.entries.length, 3, "the node logs everything (threshold 0)");
      const bad = await gw.fetch("/v1/kv/gk?trace=yes");
      assert.equal(bad.status, 400);
      assert.match(((await bad.json()) as { type: string }).type, /invalid-trace$/);
    } finally {
      await gw?.stop();
    }
  });

  it("the slow log: every port's requests over the threshold, bounded, in Redis's shape; reset; bad input", async () => {
    const r = redisClient({ port: node.respPort });
    try {
      assert.deepEqual(await r.call("config", "get", "slowlog-*"), [
        "slowlog-log-slower-than",
        "0",
        "slowlog-max-len",
        "16",
      ]);
      assert.equal(await r.call("config", "set", "slowlog-max-len", "5"), "OK");
      for (let i = 0; i < 8; i++) await r.call("set", `s${i}`, "v");
      assert.equal(await r.call("slowlog", "len"), 5, "bounded by slowlog-max-len");
      const two = (await r.call("slowlog", "get", "2")) as unknown[][];
      assert.equal(two.length, 2);
      const [id, time, us, args, client, name] = two[0]!;
      assert.ok(typeof id === "number" && (id as number) > (two[1]![0] as number), "newest first");
      assert.ok(Math.abs((time as number) - Date.now() / 1000) < 60);
      assert.ok(typeof us === "number" && us >= 0);
      assert.deepEqual(args, ["slowlog", "len"], "the log holds the SLOWLOG LEN just answered, with its arguments");
      assert.match(client as string, /^127\.0\.0\.1:\d+$/);
      assert.equal(name, "");
      assert.deepEqual((two[1]![3] as string[])[0], "set");

      // A native traced request's entry keeps its key and timeline.
      await c.put("slow-key", "v", { trace: true });
      const page = await c.slowlog({ count: 5 });
      assert.equal(page.slowerThanUs, 0);
      assert.equal(page.maxLen, 5);
      const put = page.entries.find((e) => e.args[1] === "slow-key")!;
      assert.deepEqual(put.args, ["put", "slow-key"]);
      assert.equal(put.port, "native");
      assert.ok(put.spans!.some((x) => x.stage === "journal"));

      const cli = spawnSync(process.execPath, [CLI, "slowlog", "3", "--server", `127.0.0.1:${node.port}`], {
        encoding: "utf8",
        timeout: 20_000,
      });
      assert.equal(cli.status, 0, cli.stderr);
      const lines = cli.stdout.split("\n");
      assert.match(lines[0]!, /^slow log: 5 of at most 5 entries, requests of 0 µs or more$/);
      assert.match(lines[1]!, /^#\d+ \d{4}-\d\d-\d\dT[\d:.]+Z [\d.]+ (µs|ms|s) native 127\.0\.0\.1:\d+: slowlog$/);

      assert.equal(await r.call("slowlog", "reset"), "OK");
      // Emptied: what it holds now is the RESET itself, logged once answered (threshold 0).
      assert.equal(await r.call("slowlog", "len"), 1, "RESET empties it");
      await assert.rejects(r.call("slowlog", "get", "-5"), /ERR count should be greater than or equal to -1/);
      await assert.rejects(r.call("slowlog", "get", "many"), /ERR value is not an integer or out of range/);
      await assert.rejects(r.call("slowlog", "nope"), /ERR unknown subcommand/);
      await assert.rejects(r.call("config", "set", "slowlog-max-len", "5000"), /between 0 and 1024 inclusive/);
      await assert.rejects(
        r.call("config", "set", "slowlog-log-slower-than", "soon"),
        /couldn't be parsed into an integer/,
      );
      // Off: nothing more goes in.
      assert.equal(await r.call("config", "set", "slowlog-log-slower-than", "-1"), "OK");
      await r.call("slowlog", "reset");
      await r.call("get", "s1");
      assert.equal(await r.call("slowlog", "len"), 0);
    } finally {
      r.disconnect();
    }
  });
});
