// Transactions over the native protocol (issue #16): a real node process, the
// real client. Both branches, compares on version, value and absence, TTLs,
// the limits and bad input; and a transfer workload over every shard of a
// node with the default layout, where every snapshot read must see the total.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CompareRelation, CompareTarget, Response_Which } from "../../src/protocol/gen/piccolo.js";
import type { PiccoloClient, TxnOp, TxnResult } from "../../src/client/client.js";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { MAX_KEY_BYTES, MAX_TTL_MS, TXN_MAX_OPS } from "../../src/limits.js";
import { initRouting, shardOf } from "../../src/io/route.js";
import { LAYOUTS, type RunningNode, startNode } from "../support/node.js";

async function rejectsWith(p: Promise<unknown>, code: number): Promise<PiccoloError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof PiccoloError, `expected a PiccoloError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.message}`);
    return err;
  }
  assert.fail(`expected error code ${code}, but the call succeeded`);
}

const text = (r: TxnResult["results"][number]): string | null => {
  assert.equal(r.op, "get");
  return r.op === "get" && r.found ? r.value!.toString() : null;
};

for (const layout of LAYOUTS) {
  describe(`native txn, ${layout.name}`, () => {
    let node: RunningNode;
    let c: PiccoloClient;
    before(async () => {
      node = await startNode([...layout.args, "--max-value-bytes", "65536"]);
      c = await node.client();
    });
    after(async () => {
      await c.close();
      assert.equal(await node.stop(), 0);
    });

    it("the success branch runs when every compare holds; results in the branch's order", async () => {
      const r = await c.txn({
        compare: [
          { key: "t1:a", version: 0 },
          { key: "t1:b", version: 0 },
        ],
        success: [
          { op: "put", key: "t1:a", value: "1" },
          { op: "put", key: "t1:b", value: "2" },
          { op: "get", key: "t1:a" },
          { op: "delete", key: "t1:none" },
        ],
        failure: [{ op: "get", key: "t1:a" }],
      });
      assert.equal(r.succeeded, true);
      assert.equal(r.results.length, 4);
      const [pa, pb, ga, d] = r.results;
      assert.ok(pa!.op === "put" && pa.created && pa.version > 0);
      assert.ok(pb!.op === "put" && pb.created && pb.version > 0);
      assert.equal(text(ga!), "1");
      assert.ok(ga!.op === "get" && pa.op === "put" && ga.version === pa.version, "the get sees the put before it");
      assert.deepEqual(d, { op: "delete", existed: false });
      assert.equal((await c.get("t1:b"))?.value.toString(), "2");
    });

    it("the failure branch runs when a compare does not hold, and the success branch leaves no trace", async () => {
      const v = await c.put("t2:a", "old");
      const r = await c.txn({
        compare: [
          { key: "t2:a", version: v },
          { key: "t2:b", version: 0, relation: "notEqual" }, // t2:b is absent: fails
        ],
        success: [
          { op: "put", key: "t2:a", value: "new" },
          { op: "put", key: "t2:c", value: "x" },
        ],
        failure: [
          { op: "get", key: "t2:a" },
          { op: "delete", key: "t2:a" },
          { op: "get", key: "t2:a" },
        ],
      });
      assert.equal(r.succeeded, false);
      assert.equal(r.results.length, 3);
      assert.equal(text(r.results[0]!), "old");
      assert.deepEqual(r.results[1], { op: "delete", existed: true });
      assert.equal(text(r.results[2]!), null);
      assert.equal(await c.get("t2:c"), null, "nothing of the success branch was applied");
      assert.equal(await c.get("t2:a"), null, "the failure branch's delete was");
    });

    it("compares on version: equal, notEqual, less, greater; 0 is absence", async () => {
      const v = await c.put("t3:k", "v");
      const holds = async (cmp: { version: number; relation?: "equal" | "notEqual" | "less" | "greater" }) =>
        (await c.txn({ compare: [{ key: "t3:k", ...cmp }] })).succeeded;
      assert.equal(await holds({ version: v }), true);
      assert.equal(await holds({ version: v + 1 }), false);
      assert.equal(await holds({ version: v, relation: "notEqual" }), false);
      assert.equal(await holds({ version: v + 1, relation: "notEqual" }), true);
      assert.equal(await holds({ version: v + 1, relation: "less" }), true);
      assert.equal(await holds({ version: v, relation: "less" }), false);
      assert.equal(await holds({ version: v - 1, relation: "greater" }), true);
      assert.equal(await holds({ version: v, relation: "greater" }), false);
      assert.equal(await holds({ version: 0 }), false, "a present key's version is not 0");
      assert.equal(
        (await c.txn({ compare: [{ key: "t3:absent", version: 0 }] })).succeeded,
        true,
        "an absent key's version is 0",
      );
    });

    it("compares on value: bytewise, and an absent key matches no value", async () => {
      await c.put("t4:k", "banana");
      const holds = async (key: string, value: string, relation?: "equal" | "notEqual" | "less" | "greater") =>
        (await c.txn({ compare: [{ key, value, ...(relation === undefined ? {} : { relation }) }] })).succeeded;
      assert.equal(await holds("t4:k", "banana"), true);
      assert.equal(await holds("t4:k", "banan"), false);
      assert.equal(await holds("t4:k", "apple", "greater"), true);
      assert.equal(await holds("t4:k", "cherry", "greater"), false);
      assert.equal(await holds("t4:k", "cherry", "less"), true);
      assert.equal(await holds("t4:k", "banana", "notEqual"), false);
      assert.equal(await holds("t4:absent", ""), false);
      assert.equal(await holds("t4:absent", "x", "notEqual"), false, "absent matches no value compare at all");
    });

    it("a put's ttlMs gives the key a TTL; a put over a key reports it was not created", async () => {
      const before = Date.now();
      const r = await c.txn({
        success: [
          { op: "put", key: "t5:k", value: "a", ttlMs: 60_000 },
          { op: "put", key: "t5:k", value: "b" },
          { op: "put", key: "t5:k", value: "c", ttlMs: 30_000 },
          { op: "get", key: "t5:k" },
        ],
      });
      assert.equal(r.succeeded, true);
      const [first, second] = r.results;
      assert.ok(first!.op === "put" && first.created);
      assert.ok(second!.op === "put" && !second.created && second.version > first.version);
      const g = r.results[3]!;
      assert.ok(g.op === "get");
      assert.ok(g.expireAtMs >= before + 30_000 && g.expireAtMs <= Date.now() + 30_000, `${g.expireAtMs}`);
      const ttl = await c.ttl("t5:k");
      assert.ok(ttl > 20_000 && ttl <= 30_000, `ttl ${ttl}`);
    });

    it("an empty transaction succeeds with no results", async () => {
      assert.deepEqual(await c.txn({}), { succeeded: true, results: [] });
    });

    it("verdictOnly: the chosen branch runs as it would, and the answer holds only which one ran", async () => {
      // Ten keys (on every shard of a threaded layout), as MSET's native request.
      const keys = Array.from({ length: 10 }, (_, i) => `tv:${i}`);
      const puts: TxnOp[] = keys.map((key, i) => ({ op: "put", key, value: `v${i}` }));
      assert.deepEqual(await c.txn({ success: puts, verdictOnly: true }), { succeeded: true, results: [] });
      for (const [i, key] of keys.entries()) assert.equal((await c.get(key))?.value.toString(), `v${i}`);
      // A compare that does not hold: the failure branch runs (its put lands), the success branch leaves no trace.
      const r = await c.txn({
        compare: [{ key: "tv:0", value: "not this" }],
        success: [
          { op: "put", key: "tv:1", value: "no" },
          { op: "get", key: "tv:2" },
        ],
        failure: [
          { op: "put", key: "tv:f", value: "yes" },
          { op: "get", key: "tv:0" },
        ],
        verdictOnly: true,
      });
      assert.deepEqual(r, { succeeded: false, results: [] });
      assert.equal((await c.get("tv:1"))?.value.toString(), "v1");
      assert.equal((await c.get("tv:f"))?.value.toString(), "yes");
      // Without the flag, the same request answers every op's result.
      const full = await c.txn({ success: puts.slice(0, 3) });
      assert.equal(full.results.length, 3);
    });

    it(`${TXN_MAX_OPS} compares and ops pass; one more is TXN_TOO_LARGE and nothing is applied`, async () => {
      const gets: TxnOp[] = Array.from({ length: TXN_MAX_OPS - 1 }, (_, i) => ({ op: "get", key: `t6:${i}` }));
      const ok = await c.txn({ compare: [{ key: "t6:x", version: 0 }], success: gets });
      assert.equal(ok.succeeded, true);
      assert.equal(ok.results.length, TXN_MAX_OPS - 1);
      const err = await rejectsWith(
        c.txn({
          compare: [{ key: "t6:x", version: 0 }],
          success: [{ op: "put", key: "t6:written", value: "1" }, ...gets],
        }),
        ErrorCode.TXN_TOO_LARGE,
      );
      assert.match(err.message, /4097/);
      assert.equal(await c.get("t6:written"), null);
    });

    it("bad input is refused whole, with the codes of the single-key requests; the connection goes on", async () => {
      const put = { op: "put", key: "t7:applied?", value: "1" } as const;
      await rejectsWith(c.txn({ compare: [{ key: "", version: 0 }], success: [put] }), ErrorCode.INVALID_ARGUMENT);
      await rejectsWith(
        c.txn({ success: [put, { op: "get", key: "k".repeat(MAX_KEY_BYTES + 1) }] }),
        ErrorCode.KEY_TOO_LARGE,
      );
      await rejectsWith(c.txn({ success: [put, { op: "delete", key: "" }] }), ErrorCode.INVALID_ARGUMENT);
      await rejectsWith(
        c.txn({ success: [put, { op: "put", key: "t7:big", value: "v".repeat(65_537) }] }),
        ErrorCode.VALUE_TOO_LARGE,
      );
      await rejectsWith(
        c.txn({ compare: [{ key: "t7:a", value: "v".repeat(65_537) }], success: [put] }),
        ErrorCode.VALUE_TOO_LARGE,
      );
      await rejectsWith(
        c.txn({ success: [put, { op: "put", key: "t7:a", value: "1", ttlMs: MAX_TTL_MS + 1 }] }),
        ErrorCode.INVALID_ARGUMENT,
      );
      // Enum values this node does not know (a newer client's): refused, not read as another relation.
      for (const [target, relation] of [
        [CompareTarget.VERSION, 9],
        [5, CompareRelation.EQUAL],
      ] as const) {
        const res = await c.raw((r) => {
          const t = r._initTxn();
          const cmp = t._initCompares(1)[0]!;
          cmp._initKey(1).copyBuffer(Buffer.from("k"));
          cmp.target = target as CompareTarget;
          cmp.relation = relation as CompareRelation;
          const op = t._initSuccess(1)[0]!._initPut();
          op._initKey(put.key.length).copyBuffer(Buffer.from(put.key));
          op._initValue(1).copyBuffer(Buffer.from("1"));
        });
        assert.equal(res.which(), Response_Which.ERROR);
        assert.equal(res.error.code, ErrorCode.INVALID_ARGUMENT, res.error.message);
        assert.match(res.error.message, /compare 0: unknown (relation|target)/);
      }
      // A compare without its operand is refused by the client, before anything is sent.
      const unsent = await rejectsWith(c.txn({ compare: [{ key: "t7:a" }] }), ErrorCode.INVALID_ARGUMENT);
      assert.equal(unsent.unsent, true);
      assert.equal(await c.get("t7:applied?"), null, "no refused transaction applied its put");
      await c.ping();
      assert.equal((await c.txn({ success: [put] })).succeeded, true);
      assert.equal((await c.get("t7:applied?"))?.value.toString(), "1");
    });
  });
}

describe("native txn, the bytes limit", () => {
  let node: RunningNode;
  let c: PiccoloClient;
  before(async () => {
    // Values up to 32 MiB, so a frame can carry more than a transaction may.
    node = await startNode(["--in-memory", "--shards", "2", "--max-value-bytes", String(32 * 1024 * 1024)]);
    c = await node.client({ timeoutMs: 20_000 });
  });
  after(async () => {
    await c.close();
    await node.stop();
  });

  it("over 16 MiB of keys and values is TXN_TOO_LARGE and applies nothing; under it passes", async () => {
    const six = Buffer.alloc(6 * 1024 * 1024, 0x61);
    const ops = (n: number, prefix: string): TxnOp[] =>
      Array.from({ length: n }, (_, i) => ({ op: "put", key: `${prefix}:${i}`, value: six }));
    await rejectsWith(c.txn({ success: ops(3, "big") }), ErrorCode.TXN_TOO_LARGE);
    assert.equal(await c.get("big:0"), null);
    const ok = await c.txn({ success: ops(2, "fits") });
    assert.equal(ok.succeeded, true);
    assert.equal((await c.get("fits:1"))?.value.length, six.length);
  });
});

describe("native txn, transfers between accounts on every shard (default layout)", () => {
  let node: RunningNode;
  before(async () => {
    await initRouting();
    node = await startNode([]);
  });
  after(async () => {
    assert.equal(await node.stop(), 0);
  });

  it("several clients transferring concurrently keep the total, and every snapshot read sums to it", async (t) => {
    const setup = await node.client();
    const shards = (await setup.stats()).shards.length;
    const accounts = Array.from({ length: 8 }, (_, i) => `acct:${i}`);
    const used = new Set(accounts.map((k) => shardOf(Buffer.from(k), shards)));
    if (shards > 1) assert.ok(used.size > 1, "the accounts span several shards");
    else t.diagnostic("this machine runs one shard: the transactions are single-shard");
    const START = 100;
    const TOTAL = START * accounts.length;
    const init = await setup.txn({
      compare: accounts.map((key) => ({ key, version: 0 })),
      success: accounts.map((key) => ({ op: "put", key, value: String(START) })),
    });
    assert.equal(init.succeeded, true);

    let seed = 12345;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
      return (seed >>> 8) % n;
    };
    const clients = await Promise.all(Array.from({ length: 6 }, () => node.client({ timeoutMs: 20_000 })));
    const writers = clients.slice(0, 4);
    const readers = clients.slice(4);
    let committed = 0;
    let conflicts = 0;
    let reads = 0;
    let done = false;

    const readAll = async (c: PiccoloClient): Promise<{ balances: number[]; versions: number[] }> => {
      const r = await c.txn({ success: accounts.map((key) => ({ op: "get", key })) });
      const balances: number[] = [];
      const versions: number[] = [];
      for (const x of r.results) {
        assert.ok(x.op === "get" && x.found);
        balances.push(Number(x.value!.toString()));
        versions.push(x.version);
      }
      return { balances, versions };
    };

    const writer = async (c: PiccoloClient): Promise<void> => {
      for (let n = 0; n < 60; n++) {
        const a = rand(accounts.length);
        const b = (a + 1 + rand(accounts.length - 1)) % accounts.length;
        const amount = 1 + rand(20);
        const ka = accounts[a]!;
        const kb = accounts[b]!;
        let state = await c.txn({
          success: [
            { op: "get", key: ka },
            { op: "get", key: kb },
          ],
        });
        for (let attempt = 0; attempt < 20; attempt++) {
          const [ga, gb] = state.results;
          assert.ok(ga!.op === "get" && gb!.op === "get");
          const ba = Number(ga.value!.toString());
          const bb = Number(gb.value!.toString());
          if (ba < amount) break;
          const r = await c.txn({
            compare: [
              { key: ka, version: ga.version },
              { key: kb, version: gb.version },
            ],
            success: [
              { op: "put", key: ka, value: String(ba - amount) },
              { op: "put", key: kb, value: String(bb + amount) },
            ],
            failure: [
              { op: "get", key: ka },
              { op: "get", key: kb },
            ],
          });
          if (r.succeeded) {
            committed++;
            break;
          }
          conflicts++;
          state = r; // the failure branch read both again, at one instant
        }
      }
    };

    const reader = async (c: PiccoloClient): Promise<void> => {
      while (!done) {
        const { balances } = await readAll(c);
        reads++;
        const sum = balances.reduce((x, y) => x + y, 0);
        assert.equal(sum, TOTAL, `a snapshot read saw ${balances.join(" ")}`);
        for (const b of balances) assert.ok(b >= 0, `a balance went negative: ${balances.join(" ")}`);
      }
    };

    const readersDone = Promise.all(readers.map(reader));
    await Promise.all(writers.map(writer)).finally(() => {
      done = true;
    });
    await readersDone;
    t.diagnostic(`${committed} transfers committed, ${conflicts} retried after a conflict, ${reads} snapshot reads`);
    assert.ok(committed >= 100, `most transfers commit (${committed})`);
    assert.ok(reads > 0);
    const final = await readAll(setup);
    assert.equal(
      final.balances.reduce((x, y) => x + y, 0),
      TOTAL,
    );
    const plain = await setup.mget(accounts);
    assert.equal(
      plain.reduce((x, e) => x + Number(e!.value.toString()), 0),
      TOTAL,
    );
    for (const c of [...clients, setup]) await c.close();
  });
});
