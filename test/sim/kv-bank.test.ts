// The bank workload in the cluster simulator (src/sim/bank.ts, issue #16):
// accounts under one hash tag, transfers as optimistic transactions (a
// read-only Op.TXN of two gets, then one comparing both versions and putting
// both balances, one Raft entry) and audits reading every account in one
// transaction, under the simulator's kill -9, pauses and partitions. Every
// audit that answers must add up to the total, and after healing an audit
// through every member must answer and add up. And the audits must catch
// transfers sent without their compares (lost updates).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { simulateSeeds } from "../support/sim-worker.js";

describe("the bank workload on the simulated cluster", () => {
  it("6 seeds: the total never changes, whatever the faults", async () => {
    const outcomes = await simulateSeeds([1, 2, 3, 4, 5, 6], { workload: "bank" });
    const sum = { committed: 0, conflicts: 0, unknown: 0, auditsOk: 0, crashes: 0, pauses: 0, partitions: 0 };
    for (const o of outcomes) {
      if ("error" in o)
        assert.fail(`seed ${o.seed} failed: ${o.error}\nreplay: npm run sim:kv -- --seed ${o.seed} --workload bank`);
      const b = o.result.bank!;
      sum.committed += b.committed;
      sum.conflicts += b.conflicts;
      sum.unknown += b.unknown;
      sum.auditsOk += b.auditsOk;
      sum.crashes += o.result.crashes;
      sum.pauses += o.result.pauses;
      sum.partitions += o.result.partitions;
    }
    const counts = JSON.stringify(sum);
    assert.ok(sum.committed > 600, `transfers committed: ${counts}`);
    assert.ok(sum.conflicts > 0, `some transfers lost their race: ${counts}`);
    assert.ok(sum.auditsOk > 200, `audits answered: ${counts}`);
    assert.ok(sum.unknown > 0, `some transfers' outcomes were unknown: ${counts}`);
    assert.ok(sum.crashes > 0 && sum.pauses > 0 && sum.partitions > 0, `the faults happened: ${counts}`);
  });

  it("replays a seed exactly", async () => {
    const [a, b] = await simulateSeeds([4, 4], { workload: "bank" });
    assert.ok(a !== undefined && "result" in a && b !== undefined && "result" in b);
    assert.deepEqual(a.result, b.result);
  });

  it("has teeth: transfers without their compares (lost updates) are caught by an audit", async () => {
    const [o] = await simulateSeeds([1], { workload: "bank", blindTransfers: true });
    assert.ok(o !== undefined && "error" in o, "seed 1 with blind transfers passed");
    assert.match(o.error, /bank: .*add up to \d+, not 500/);
  });
});
