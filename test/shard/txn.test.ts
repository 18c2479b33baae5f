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
import { CommandView, commandBytes, encodeCommand, Op, Result, TXN_NO_RESULTS } from "../../src/shard/command.js";
import { ShardCore } from "../../src/shard/execute.js";
import { encodeTxnPart } from "../../src/shard/txn.js";
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

describe("a transaction run in place (the maps on the IO thread, decision 0338)", () => {
  // The same transactions, given to one core as encoded bytes (what a worker or a partition's log gets)
  // and to another as the caller's objects (CommandFields.txn, what --shards 0 gets): every answer and
  // both maps must come out byte for byte the same.
  const inc = (key: string, by: string) => ({ ...put(key, by), op: Op.INCRBY });
  const del = (key: string) => ({ ...put(key, ""), op: Op.DELETE, value: null });
  const valueIs = (key: string, value: string, relation: number) => ({
    key: enc.encode(key),
    target: CompareTarget.VALUE,
    relation,
    number: 0,
    value: enc.encode(value),
  });
  const specs: TxnSpec[] = [
    { compares: [], success: [put("a", "1"), put("b", "2"), put("a", "3")], failure: [] },
    { compares: [versionIs("c", 0)], success: [put("c", "10"), inc("c", "5"), get("c")], failure: [get("a")] },
    // Fails: c exists now; the failure branch runs and reads.
    { compares: [versionIs("c", 0)], success: [put("c", "x")], failure: [get("a"), get("c"), get("nothing")] },
    {
      compares: [valueIs("a", "3", CompareRelation.EQUAL), valueIs("b", "1", CompareRelation.GREATER)],
      success: [del("a"), inc("b", "40"), get("b")],
      failure: [],
    },
    {
      compares: [valueIs("zz", "", CompareRelation.NOT_EQUAL)],
      success: [put("zz", "never")],
      failure: [inc("a", "1")],
    },
    // Not a number: the op's own failure is its result; the others still run.
    { compares: [], success: [put("s", "abc"), inc("s", "1"), get("s")], failure: [] },
    { compares: [], success: [put("v", "only the verdict")], failure: [], verdictOnly: true },
    { compares: [], success: [], failure: [] },
  ];
  it("answers and changes the map exactly as the same transaction from its bytes", () => {
    const fromBytes = new ShardCore();
    const inPlace = new ShardCore();
    const view = new CommandView();
    const nowMs = 1_000_000;
    for (const [i, spec] of specs.entries()) {
      const flags = spec.verdictOnly === true ? TXN_NO_RESULTS : 0;
      const fields = { op: Op.TXN, flags, tag: i, nowMs, expireAtMs: 0, arg0: -1, arg1: 1, key: new Uint8Array(0) };
      const part = {
        id: 0,
        participants: [],
        compares: spec.compares,
        success: spec.success.map((op, index) => ({ index, op })),
        failure: spec.failure.map((op, index) => ({ index, op })),
      };
      const a = new Result().reset(i);
      fromBytes.execute(view.of({ ...fields, value: encodeTxnPart(part, nowMs) }), a);
      const encodedA = new Uint8Array(a.byteLength());
      a.encode(encodedA, 0);
      const b = new Result().reset(i);
      inPlace.execute(view.of({ ...fields, value: null, txn: spec }), b);
      const encodedB = new Uint8Array(b.byteLength());
      b.encode(encodedB, 0);
      assert.deepEqual(encodedB, encodedA, `transaction ${i}: the same answer`);
      assert.equal(a.status, ErrorCode.OK);
    }
    // The runs above took both branches, failed compares on versions and values, and an op that failed.
    const read = (core: ShardCore, key: string) => {
      const r = new Result().reset(0);
      const c = {
        op: Op.GET,
        flags: 0,
        tag: 0,
        nowMs,
        expireAtMs: 0,
        arg0: 0,
        arg1: 0,
        key: enc.encode(key),
        value: null,
      };
      core.execute(view.of(c), r);
      return [r.flag, r.version, r.value === null ? "" : dec.decode(r.value)];
    };
    assert.equal(read(inPlace, "b")[2], "42");
    for (const key of ["a", "b", "c", "s", "v", "zz", "nothing"])
      assert.deepEqual(read(inPlace, key), read(fromBytes, key), `key ${key}`);
    assert.equal(inPlace.lastVersion, fromBytes.lastVersion);
    assert.equal(inPlace.store.size, fromBytes.store.size);
  });

  it("a command read from bytes after one run in place carries no transaction", () => {
    const core = new ShardCore();
    const view = new CommandView();
    const spec: TxnSpec = { compares: [], success: [put("k", "v")], failure: [] };
    view.of({
      op: Op.TXN,
      flags: 0,
      tag: 0,
      nowMs: 1,
      expireAtMs: 0,
      arg0: -1,
      arg1: 1,
      key: new Uint8Array(0),
      value: null,
      txn: spec,
    });
    core.execute(view, new Result().reset(0));
    // A command read from bytes next carries no transaction: the reader forgets the last one.
    const bytes = new Uint8Array(commandBytes(1, 0));
    encodeCommand(bytes, 0, {
      op: Op.GET,
      flags: 0,
      tag: 0,
      nowMs: 1,
      expireAtMs: 0,
      arg0: 0,
      arg1: 0,
      key: enc.encode("k"),
      value: null,
    });
    assert.ok(view.wrap(bytes));
    assert.equal(view.txn, null);
  });
});
