// Transactions below the protocols: the IO thread's split (src/io/txn.ts),
// real shard worker threads meeting at the barrier (src/shard/txn-barrier.ts),
// and their journals. Driven through the Dispatcher as the ports drive it.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ErrorCode } from "../../src/errors.js";
import { Dispatcher, InFlight, type RequestOwner } from "../../src/io/dispatch.js";
import { initRouting, shardOf } from "../../src/io/route.js";
import { type Durability, type ShardBackend, ThreadedShards } from "../../src/io/shards.js";
import { CompareRelation, CompareTarget, sendTxn, type TxnOutcome, type TxnSpec } from "../../src/io/txn.js";
import { Op, type Result } from "../../src/shard/command.js";
import type { TxnGather } from "../../src/io/txn.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

const owner: RequestOwner = { requestDone() {}, charge() {}, gone: false };

class TxnReq extends InFlight {
  gather: TxnGather | null = null;
  onResult(part: number, r: Result, d: Dispatcher): void {
    this.gather!.onPart(part, r.status, r.flag, r.value, d);
  }
}

interface Node {
  d: Dispatcher;
  backend: ShardBackend;
  txn(spec: TxnSpec): Promise<TxnOutcome>;
  close(): Promise<void>;
}

async function start(shards: number, durability: Durability | null): Promise<Node> {
  await initRouting();
  const d = new Dispatcher();
  const backend = new ThreadedShards(
    shards,
    {
      onResult: (r) => d.onResult(r),
      onBatchEnd() {},
      onDrain() {},
      onLog() {},
    },
    false,
    durability,
  );
  d.backend = backend;
  d.onSentLater = () => backend.flush();
  await backend.ready!();
  return {
    d,
    backend,
    txn(spec) {
      return new Promise((resolve, reject) => {
        const req = new TxnReq(owner);
        const g = sendTxn(d, req, spec, Date.now(), resolve, (gather) => {
          req.gather = gather;
        });
        if ("code" in g) return reject(new Error(g.message));
        backend.flush();
      });
    },
    close: () => backend.close(),
  };
}

function durable(): Durability {
  const root = mkdtempSync(join(tmpdir(), "piccolo-txn-"));
  roots.push(root);
  return { shardDir: (s) => join(root, `shard-${s}`), fsync: "everysec", snapshotLogBytes: 64 * 1024 * 1024 };
}

const put = (key: string, value: string) => ({
  op: Op.PUT,
  flags: 0,
  expireAtMs: 0,
  arg0: 0,
  arg1: 0,
  key: enc.encode(key),
  value: enc.encode(value),
});
const get = (key: string) => ({ ...put(key, ""), op: Op.GET, value: null });
const versionIs = (key: string, version: number) => ({
  key: enc.encode(key),
  target: CompareTarget.VERSION,
  relation: CompareRelation.EQUAL,
  number: version,
  value: null,
});

/** Two keys on different shards of `n`. */
function keysOnTwoShards(n: number): [string, string] {
  const a = "acct:0";
  for (let i = 1; i < 1000; i++) {
    const b = `acct:${i}`;
    if (shardOf(enc.encode(b), n) !== shardOf(enc.encode(a), n)) return [a, b];
  }
  throw new Error("no two shards");
}

for (const layout of [
  { name: "in memory", durability: () => null },
  { name: "durable", durability: durable },
]) {
  describe(`transactions across shard workers, ${layout.name}`, () => {
    it("all or nothing on a compare over two shards; results in the branch's order", async () => {
      const node = await start(2, layout.durability());
      try {
        const [a, b] = keysOnTwoShards(2);
        const first = await node.txn({
          compares: [versionIs(a, 0), versionIs(b, 0)],
          success: [put(a, "1"), put(b, "2"), get(a)],
          failure: [get(a)],
        });
        assert.equal(first.status, ErrorCode.OK);
        assert.equal(first.succeeded, true);
        assert.equal(first.results.length, 3);
        assert.equal(dec.decode(first.results[2]!.value!), "1");
        const vb = first.results[1]!.version;
        // A stale compare on one shard: nothing of the success branch happens on either.
        const second = await node.txn({
          compares: [versionIs(a, 0), versionIs(b, vb)],
          success: [put(a, "x"), put(b, "y")],
          failure: [get(a), get(b)],
        });
        assert.equal(second.succeeded, false);
        assert.deepEqual(
          second.results.map((r) => dec.decode(r.value!)),
          ["1", "2"],
        );
      } finally {
        await node.close();
      }
    });

    it("concurrent transfers between accounts on both shards keep the total, and every read of all balances sums to it", async () => {
      const node = await start(2, layout.durability());
      try {
        const accounts = Array.from({ length: 8 }, (_, i) => `acct:${i}`);
        assert.ok(new Set(accounts.map((k) => shardOf(enc.encode(k), 2))).size === 2, "accounts span both shards");
        await node.txn({ compares: [], success: accounts.map((k) => put(k, "100")), failure: [] });
        let seed = 7;
        const rand = (n: number) => {
          seed = (seed * 1103515245 + 12345) & 0x7fffffff;
          return seed % n;
        };
        let moved = 0;
        const transfers = Array.from({ length: 300 }, async () => {
          for (;;) {
            const from = accounts[rand(8)]!;
            let to = accounts[rand(8)]!;
            if (to === from) to = accounts[(accounts.indexOf(from) + 1) % 8]!;
            const read = await node.txn({ compares: [], success: [get(from), get(to)], failure: [] });
            const [f, t] = read.results;
            const res = await node.txn({
              compares: [versionIs(from, f!.version), versionIs(to, t!.version)],
              success: [
                put(from, String(Number(dec.decode(f!.value!)) - 1)),
                put(to, String(Number(dec.decode(t!.value!)) + 1)),
              ],
              failure: [],
            });
            assert.equal(res.status, ErrorCode.OK);
            if (res.succeeded) {
              moved++;
              return;
            }
          }
        });
        const audits = Array.from({ length: 50 }, async () => {
          const all = await node.txn({ compares: [], success: accounts.map(get), failure: [] });
          const sum = all.results.reduce((n, r) => n + Number(dec.decode(r.value!)), 0);
          assert.equal(sum, 800, "a read of every balance in one transaction sees whole transfers only");
        });
        await Promise.all([...transfers, ...audits]);
        assert.equal(moved, 300);
        const all = await node.txn({ compares: [], success: accounts.map(get), failure: [] });
        assert.equal(
          all.results.reduce((n, r) => n + Number(dec.decode(r.value!)), 0),
          800,
        );
      } finally {
        await node.close();
      }
    });
  });
}

describe("transactions in the journal", () => {
  it("a restart brings back every part of every transaction, and ids keep growing", async () => {
    const dur = durable();
    const node = await start(2, dur);
    const [a, b] = keysOnTwoShards(2);
    for (let i = 0; i < 20; i++)
      await node.txn({ compares: [], success: [put(a, `a${i}`), put(b, `b${i}`)], failure: [] });
    await node.close();
    const again = await start(2, dur);
    try {
      assert.ok(again.backend.txnSlots!.firstId > 20, "ids above those in the logs");
      const r = await again.txn({ compares: [], success: [get(a), get(b)], failure: [] });
      assert.deepEqual(
        r.results.map((x) => dec.decode(x.value!)),
        ["a19", "b19"],
      );
    } finally {
      await again.close();
    }
  });
});
