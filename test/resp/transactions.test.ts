// Redis transactions on real nodes, through ioredis: MULTI/EXEC/DISCARD
// with Redis's replies and errors, WATCH's optimistic locking, RENAME,
// RENAMENX, COPY, MSET and MSETNX made atomic by the transactions below
// the protocols (issue #16), a bank workload that keeps its total under
// concurrent WATCH/MULTI/EXEC, and a three-member cluster where a
// transaction must stay in one partition.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Redis } from "ioredis";
import { partitionOf } from "../../src/cluster/placement.js";
import { initHash } from "../../src/hash.js";
import { initRouting, shardOf } from "../../src/io/route.js";
import { eventually } from "../support/eventually.js";
import { LAYOUTS, memberList, type RunningNode, startMember, startNode, stopAll } from "../support/node.js";
import { redisClient } from "./support.js";

const enc = new TextEncoder();

/** The error's message of a rejected promise. */
async function err(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as Error).message;
  }
  assert.fail("expected an error");
}

/** Raw RESP: sends `text` and collects the reply bytes until `done` says they are complete. */
function raw(port: number, text: string, done: (s: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1", () => s.write(text));
    let got = "";
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no complete reply; got ${JSON.stringify(got)}`));
    }, 5000);
    s.on("data", (d) => {
      got += d.toString("latin1");
      if (done(got)) {
        clearTimeout(timer);
        s.destroy();
        resolve(got);
      }
    });
    s.on("error", reject);
  });
}

/** Two keys on different shards of `shards` (with prefix `p`). */
function twoShards(p: string, shards: number): [string, string] {
  const a = `${p}:0`;
  for (let i = 1; i < 1000; i++) {
    const b = `${p}:${i}`;
    if (shardOf(enc.encode(b), shards) !== shardOf(enc.encode(a), shards)) return [a, b];
  }
  throw new Error("no two shards");
}

before(async () => {
  await initRouting();
  await initHash();
});

for (const layout of LAYOUTS) {
  const shards = layout.args.includes("0") ? 1 : 2;
  describe(`MULTI/EXEC/WATCH, ${layout.name}`, () => {
    let node: RunningNode;
    let r: Redis;
    let other: Redis;
    before(async () => {
      node = await startNode(layout.args);
      r = redisClient({ port: node.respPort });
      other = redisClient({ port: node.respPort });
    });
    after(async () => {
      r.disconnect();
      other.disconnect();
      await node.stop();
    });

    it("EXEC answers each queued command's reply, in order; QUEUED in between", async () => {
      await r.set("m:n", "10");
      const out = await r
        .multi()
        .set("m:a", "1")
        .get("m:a")
        .incr("m:n")
        .mget("m:a", "m:n", "m:absent")
        .del("m:a", "m:absent")
        .exists("m:a")
        .ping()
        .exec();
      assert.deepEqual(out, [
        [null, "OK"],
        [null, "1"],
        [null, 11],
        [null, ["1", "11", null]],
        [null, 1],
        [null, 0],
        [null, "PONG"],
      ]);
      // By hand: +OK, +QUEUED..., then the array.
      const reply = await raw(
        node.respPort,
        "MULTI\r\nSET m:b 2\r\nGET m:b\r\nEXEC\r\n",
        (s) => s.endsWith("$1\r\n2\r\n") || s.includes("-"),
      );
      assert.equal(reply, "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n$1\r\n2\r\n");
      assert.deepEqual(await r.multi().exec(), [], "an empty transaction answers an empty array");
    });

    it("a command's own error is its element; the others still run (INCR of a non-integer)", async () => {
      await r.set("e:s", "abc");
      const out = await r.multi().incr("e:s").set("e:t", "1").incr("e:t").exec();
      assert.ok(out![0]![0] instanceof Error);
      assert.match((out![0]![0] as Error).message, /^ERR value is not an integer or out of range/);
      assert.deepEqual(out!.slice(1), [
        [null, "OK"],
        [null, 2],
      ]);
      assert.equal(await r.get("e:s"), "abc");
      assert.equal(await r.get("e:t"), "2");
    });

    it("EXECABORT: a command refused while queueing discards the whole transaction", async () => {
      for (const bad of [
        ["set", "x:k"], // arity
        ["nosuchcommand", "x:k"], // unknown
        ["set", "x:k", "v", "BADOPTION"], // its own syntax check
        ["rename", "x:a", "x:b"], // reads before it writes: not in a transaction
        ["keys", "*"], // walks the shards
      ]) {
        assert.equal(await r.call("multi"), "OK");
        assert.equal(await r.call("set", "x:before", "1"), "QUEUED");
        const e = await err(r.call(bad[0]!, ...bad.slice(1)));
        assert.match(e, /^ERR /, `${bad.join(" ")} is refused at once`);
        assert.equal(await r.call("set", "x:after", "1"), "QUEUED");
        assert.match(await err(r.call("exec")), /^EXECABORT Transaction discarded because of previous errors/);
        assert.equal(await r.exists("x:before", "x:after"), 0, `${bad.join(" ")}: nothing was applied`);
      }
      // ioredis's view of the same.
      await assert.rejects(r.multi().set("x:c", "1").call("set", "x:c").exec(), /EXECABORT/);
      assert.equal(await r.get("x:c"), null);
      assert.equal(await r.ping(), "PONG", "the connection is out of MULTI");
    });

    it("DISCARD, and Redis's errors for EXEC/DISCARD without MULTI and MULTI inside MULTI", async () => {
      assert.equal(await r.call("multi"), "OK");
      assert.equal(await r.call("set", "d:k", "v"), "QUEUED");
      assert.equal(await err(r.call("multi")), "ERR MULTI calls can not be nested");
      assert.equal(await err(r.call("watch", "d:k")), "ERR WATCH inside MULTI is not allowed");
      assert.equal(await r.call("discard"), "OK");
      assert.equal(await r.get("d:k"), null, "DISCARD runs nothing");
      assert.equal(await err(r.call("exec")), "ERR EXEC without MULTI");
      assert.equal(await err(r.call("discard")), "ERR DISCARD without MULTI");
      // A nested MULTI does not abort the transaction (as Redis).
      assert.equal(await r.call("multi"), "OK");
      await err(r.call("multi"));
      assert.equal(await r.call("set", "d:k", "v"), "QUEUED");
      assert.deepEqual(await r.call("exec"), ["OK"]);
    });

    it("WATCH: a write by another connection makes EXEC answer null and run nothing", async () => {
      await r.set("w:k", "0");
      assert.equal(await r.watch("w:k"), "OK");
      await other.set("w:k", "theirs");
      assert.equal(await r.multi().set("w:k", "mine").set("w:side", "1").exec(), null);
      assert.equal(await r.get("w:k"), "theirs");
      assert.equal(await r.get("w:side"), null, "no command of the aborted EXEC ran");
      // Changed and changed back is still a change (versions, as Redis's dirty flag).
      await r.watch("w:k");
      await other.set("w:k", "x");
      await other.set("w:k", "theirs");
      assert.equal(await r.multi().set("w:k", "mine").exec(), null);
      // A key created after WATCH (absent: version 0), and one deleted.
      await r.watch("w:new", "w:k");
      await other.set("w:new", "1");
      assert.equal(await r.multi().get("w:k").exec(), null);
      await r.watch("w:k");
      await other.del("w:k");
      assert.equal(await r.multi().get("w:k").exec(), null);
    });

    it("WATCH without a conflicting write: EXEC runs; EXEC, DISCARD and UNWATCH forget the watches", async () => {
      await r.set("u:k", "0");
      await r.watch("u:k", "u:absent");
      await other.set("u:unrelated", "1");
      assert.deepEqual(await r.multi().set("u:k", "1").exec(), [[null, "OK"]]);
      // The EXEC cleared the watch: a later write does not abort the next transaction.
      await other.set("u:k", "2");
      assert.deepEqual(await r.multi().get("u:k").exec(), [[null, "2"]]);
      await r.watch("u:k");
      assert.equal(await r.unwatch(), "OK");
      await other.set("u:k", "3");
      assert.deepEqual(await r.multi().get("u:k").exec(), [[null, "3"]]);
      await r.watch("u:k");
      await r.call("multi");
      await r.call("discard");
      await other.set("u:k", "4");
      assert.deepEqual(await r.multi().get("u:k").exec(), [[null, "4"]]);
      // An expiry change is not a change of the key's version (docs/resp.md: a difference from Redis)...
      await r.watch("u:k");
      await other.expire("u:k", 100);
      assert.deepEqual(await r.multi().get("u:k").exec(), [[null, "4"]]);
      // ...but a watched key that expires before EXEC reads as absent: EXEC fails (as Redis 7).
      await r.watch("u:k");
      await other.pexpire("u:k", 50);
      await new Promise((res) => setTimeout(res, 120));
      assert.equal(await r.multi().set("u:k", "again").exec(), null);
      assert.equal(await r.exists("u:k"), 0);
      await r.set("u:k", "4");
      // The connection's own writes after WATCH count too (as Redis).
      await r.watch("u:k");
      await r.set("u:k", "5");
      assert.equal(await r.multi().get("u:k").exec(), null);
    });

    it("pipelined after WATCH/EXEC or RENAME, a command sees their writes (it is not started before they answer)", async () => {
      await r.set("p:k", "1");
      const out = await r.pipeline().watch("p:k").call("multi").incr("p:k").call("exec").get("p:k").exec();
      assert.deepEqual(out![3], [null, [2]], "EXEC waited for WATCH's read and ran");
      assert.deepEqual(out![4], [null, "2"], "the GET after EXEC saw its write");
      const moved = await r
        .pipeline()
        .set("p:src", "v")
        .rename("p:src", "p:dst")
        .get("p:dst")
        .exists("p:src")
        .copy("p:dst", "p:copy")
        .get("p:copy")
        .exec();
      assert.deepEqual(moved, [
        [null, "OK"],
        [null, "OK"],
        [null, "v"],
        [null, 0],
        [null, 1],
        [null, "v"],
      ]);
      // Past the dispatch window (64 to start with): requests held by the connection keep their order too.
      const p = r.pipeline().set("p:a", "v");
      for (let i = 0; i < 400; i++) p.rename("p:a", "p:b").get("p:b").rename("p:b", "p:a").get("p:a");
      const many = (await p.exec())!.slice(1);
      const wrong = many.filter(([e, v], i) => e !== null || v !== (i % 2 === 0 ? "OK" : "v"));
      assert.deepEqual(wrong, [], "every GET after a RENAME in the pipeline found the key");
    });

    it("a failed WATCH transaction answers a null array: *-1 in RESP2, _ in RESP3", async () => {
      await r.set("n:k", "1");
      // WATCH, then a write on the same connection: EXEC finds the version changed.
      const two = await raw(
        node.respPort,
        "WATCH n:k\r\nSET n:k 2\r\nMULTI\r\nGET n:k\r\nEXEC\r\n",
        (s) => s.split("\r\n").length >= 6,
      );
      assert.equal(two, "+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n*-1\r\n");
      const three = await raw(
        node.respPort,
        "HELLO 3\r\nWATCH n:k\r\nSET n:k 3\r\nMULTI\r\nGET n:k\r\nEXEC\r\n",
        (s) => s.endsWith("+QUEUED\r\n_\r\n") || s.endsWith("]\r\n") || s.includes("-"),
      );
      assert.ok(three.endsWith("+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n_\r\n"), JSON.stringify(three));
    });

    it("RENAME, RENAMENX, COPY, MSET, MSETNX: Redis's answers", async () => {
      await r.set("r:src", "v", "EX", 100);
      assert.equal(await r.rename("r:src", "r:dst"), "OK");
      assert.equal(await r.get("r:src"), null);
      assert.equal(await r.get("r:dst"), "v");
      assert.ok((await r.ttl("r:dst")) > 90, "RENAME keeps the TTL");
      assert.equal(await err(r.rename("r:none", "r:x")), "ERR no such key");
      assert.equal(await r.rename("r:dst", "r:dst"), "OK", "renaming a key to itself");
      await r.set("r:taken", "t");
      assert.equal(await r.renamenx("r:dst", "r:taken"), 0);
      assert.equal(await r.get("r:dst"), "v");
      assert.equal(await r.renamenx("r:dst", "r:free"), 1);
      assert.deepEqual(await r.mget("r:dst", "r:free"), [null, "v"]);
      assert.equal(await r.copy("r:free", "r:copy"), 1);
      assert.equal(await r.copy("r:free", "r:taken"), 0, "COPY without REPLACE leaves an existing key");
      assert.equal(await r.get("r:taken"), "t");
      assert.equal(await r.copy("r:free", "r:taken", "REPLACE"), 1);
      assert.deepEqual(await r.mget("r:free", "r:copy", "r:taken"), ["v", "v", "v"]);
      assert.equal(await r.copy("r:none", "r:y"), 0);
      assert.match(await err(r.call("copy", "r:free", "r:z", "DB", "1")), /DB index is out of range/);
      assert.equal(await r.call("copy", "r:free", "r:z", "DB", "0"), 1);
      assert.equal(await r.mset("r:m1", "1", "r:m2", "2", "r:m1", "3"), "OK");
      assert.deepEqual(await r.mget("r:m1", "r:m2"), ["3", "2"], "a key given twice: the last value");
      assert.equal(await r.msetnx("r:n1", "1", "r:n2", "2"), 1);
      assert.equal(await r.msetnx("r:n3", "3", "r:n1", "other", "r:n4", "4"), 0);
      assert.deepEqual(
        await r.mget("r:n1", "r:n3", "r:n4"),
        ["1", null, null],
        "MSETNX with one existing key sets none",
      );
      // MSET inside MULTI is part of the one transaction.
      assert.deepEqual(await r.multi().mset("r:t1", "a", "r:t2", "b").mget("r:t1", "r:t2").exec(), [
        [null, "OK"],
        [null, ["a", "b"]],
      ]);
    });

    if (shards < 2) return;

    it("RENAME across shards is atomic: a reader never sees both keys or neither", async () => {
      const [a, b] = twoShards("ra", shards);
      await r.del(a, b);
      await r.set(a, "token");
      const renamer = redisClient({ port: node.respPort });
      const reader = redisClient({ port: node.respPort });
      try {
        let stop = false;
        let renames = 0;
        const renaming = (async () => {
          while (!stop) {
            await renamer.rename(a, b);
            await renamer.rename(b, a);
            renames += 2;
          }
        })();
        let reads = 0;
        const bad: unknown[] = [];
        const until = Date.now() + 1500;
        while (Date.now() < until) {
          // One consistent view of both keys: a transaction of two GETs.
          const out = (await reader.multi().get(a).get(b).exec())!.map(([, v]) => v);
          if (out.filter((v) => v !== null).length !== 1) bad.push(out);
          reads++;
        }
        stop = true;
        await renaming;
        assert.ok(renames > 50 && reads > 50, `${renames} renames, ${reads} reads`);
        assert.deepEqual(bad, [], "every read saw exactly one of the two keys");
        assert.deepEqual(await r.mget(a, b), ["token", null]);
      } finally {
        renamer.disconnect();
        reader.disconnect();
      }
    });

    it("MSETNX across shards racing on the same keys: exactly one wins, whole", async () => {
      const [a, b] = twoShards("nx", shards);
      const clients = Array.from({ length: 4 }, () => redisClient({ port: node.respPort }));
      try {
        for (let round = 0; round < 30; round++) {
          await r.del(a, b);
          const won = await Promise.all(clients.map((c, i) => c.msetnx(a, `c${i}`, b, `c${i}`)));
          assert.equal(won.filter((w) => w === 1).length, 1, `round ${round}: one winner (${won})`);
          const winner = won.indexOf(1);
          assert.deepEqual(await r.mget(a, b), [`c${winner}`, `c${winner}`], `round ${round}: the winner's values`);
        }
      } finally {
        for (const c of clients) c.disconnect();
      }
    });

    it("a bank over WATCH/MULTI/EXEC: concurrent transfers keep the total, as every audit sees it", async () => {
      const accounts = Array.from({ length: 6 }, (_, i) => `bank:${i}`);
      await r.mset(...accounts.flatMap((k) => [k, "100"]));
      const clients = Array.from({ length: 4 }, () => redisClient({ port: node.respPort }));
      const auditor = redisClient({ port: node.respPort });
      let committed = 0;
      let conflicts = 0;
      try {
        let stop = false;
        const audits: number[] = [];
        const auditing = (async () => {
          while (!stop) {
            const out = (await auditor
              .multi()
              .mget(...accounts)
              .exec())!;
            audits.push((out[0]![1] as string[]).reduce((s, v) => s + Number(v), 0));
          }
        })();
        await Promise.all(
          clients.map(async (c, ci) => {
            for (let t = 0; t < 40; t++) {
              const from = accounts[(ci + t) % accounts.length]!;
              const to = accounts[(ci * 3 + t * 5 + 1) % accounts.length]!;
              if (from === to) continue;
              for (;;) {
                await c.watch(from, to);
                const [f, g] = (await c.mget(from, to)).map(Number);
                const amount = 1 + ((ci + t) % 7);
                const out = await c
                  .multi()
                  .set(from, String(f! - amount))
                  .set(to, String(g! + amount))
                  .exec();
                if (out !== null) {
                  committed++;
                  break;
                }
                conflicts++;
              }
            }
          }),
        );
        stop = true;
        await auditing;
        const balances = (await r.mget(...accounts)).map(Number);
        assert.equal(
          balances.reduce((s, v) => s + v, 0),
          600,
          `the total is kept (${balances}; ${committed} committed, ${conflicts} conflicts)`,
        );
        assert.ok(committed >= 100, `${committed} transfers committed`);
        assert.ok(audits.length > 0);
        assert.deepEqual(
          audits.filter((s) => s !== 600),
          [],
          "every audit (one transaction) saw the total",
        );
      } finally {
        for (const c of clients) c.disconnect();
        auditor.disconnect();
      }
    });
  });
}

describe("transactions in a cluster: one partition each", () => {
  const PARTITIONS = 64;
  let root: string;
  const nodes: RunningNode[] = [];
  let r: Redis;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "piccolo-resp-txn-"));
    const list = await memberList();
    nodes.push(...(await Promise.all([0, 1, 2].map((i) => startMember(list, root, i, ["--tick-ms", "20"])))));
    r = redisClient({ port: nodes[0]!.respPort, maxRetriesPerRequest: 0 });
    await eventually("the cluster serves writes", () => r.set("ready", "1"));
  });
  after(async () => {
    r.disconnect();
    await stopAll(nodes);
    await rm(root, { recursive: true, force: true });
  });

  /** Two untagged keys in different partitions. */
  function twoPartitions(): [string, string] {
    const a = "c:0";
    for (let i = 1; i < 1000; i++) {
      const b = `c:${i}`;
      if (partitionOf(Buffer.from(b), PARTITIONS) !== partitionOf(Buffer.from(a), PARTITIONS)) return [a, b];
    }
    throw new Error("no two partitions");
  }

  it("hash-tagged keys: MULTI/EXEC, WATCH, RENAME, MSETNX work", async () => {
    await r.set("{u1}:a", "1");
    assert.deepEqual(await r.multi().incr("{u1}:a").set("{u1}:b", "x").mget("{u1}:a", "{u1}:b").exec(), [
      [null, 2],
      [null, "OK"],
      [null, ["2", "x"]],
    ]);
    await r.watch("{u1}:a");
    const o = redisClient({ port: nodes[1]!.respPort });
    try {
      await eventually("another member writes {u1}:a", () => o.set("{u1}:a", "9"));
    } finally {
      o.disconnect();
    }
    assert.equal(await r.multi().set("{u1}:a", "mine").exec(), null, "a write through another member is seen");
    assert.equal(await r.rename("{u1}:b", "{u1}:c"), "OK");
    assert.deepEqual(await r.mget("{u1}:b", "{u1}:c"), [null, "x"]);
    assert.equal(await r.msetnx("{u1}:n1", "1", "{u1}:c", "2"), 0);
    assert.equal(await r.get("{u1}:n1"), null);
    assert.equal(await r.mset("{u1}:m1", "1", "{u1}:m2", "2"), "OK");
  });

  it("untagged keys in two partitions: CROSSSLOT, and nothing applied", async () => {
    const [a, b] = twoPartitions();
    await r.set(a, "A");
    assert.match(await err(r.multi().set(a, "changed").set(b, "B").exec()), /^CROSSSLOT /);
    assert.match(await err(r.rename(a, b)), /^CROSSSLOT /);
    assert.match(await err(r.mset(a, "1", b, "2")), /^CROSSSLOT /);
    assert.match(await err(r.msetnx(a, "1", b, "2")), /^CROSSSLOT /);
    assert.deepEqual(await r.mget(a, b), ["A", null], "nothing of any of them was applied");
    // One partition is fine without a tag.
    assert.deepEqual(await r.multi().set(a, "again").get(a).exec(), [
      [null, "OK"],
      [null, "again"],
    ]);
  });
});
