// The replicated key-value store in the deterministic simulator: three
// members, partitions replicated by multi-Raft, lossy and partitioned network,
// crashes and restarts; every client history must be linearizable. And the
// checker must catch a planted bug: reads served without ReadIndex.
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { initHash } from "../../src/hash.js";
import { KvSimulation } from "../../src/sim/kv-cluster.js";

before(async () => {
  await initHash();
});

describe("replicated KV under faults, checked for linearizability", () => {
  it("60 seeds: every history is linearizable", async () => {
    let operations = 0;
    let unknown = 0;
    let crashes = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const r = await new KvSimulation({ seed }).run();
      assert.equal(r.verdict.ok, true, `seed ${seed}: ${r.verdict.ok === true ? "" : r.verdict.detail}`);
      operations += r.operations;
      unknown += r.unknown;
      crashes += r.crashes;
    }
    assert.ok(operations > 20_000, `${operations} operations checked`);
    assert.ok(unknown > 0 && crashes > 0, "the faults produced unknown outcomes and crashes");
  });

  it("replays a seed exactly", async () => {
    const a = await new KvSimulation({ seed: 11 }).run();
    const b = await new KvSimulation({ seed: 11 }).run();
    assert.deepEqual(a, b);
  });

  it("has teeth: reads served without ReadIndex are caught as stale", async () => {
    let caught = -1;
    for (let seed = 1; seed <= 10 && caught < 0; seed++) {
      const r = await new KvSimulation({ seed, plantedStaleReads: true }).run();
      if (r.verdict.ok === false) {
        caught = seed;
        assert.match(r.verdict.detail, /read = /);
      }
    }
    assert.ok(caught > 0, "no seed in 1..10 exposed stale reads");
  });
});
