// The cluster's own code in the deterministic simulator (src/sim/kv-cluster.ts):
// members built by src/cluster/member.ts (forwarder, liveness, group hosts with
// the real MultiRaft, over the group worker's ring protocol on most seeds) on
// virtual time, a simulated network and disks; kill -9, pauses past every
// deadline, one-way and two-way partitions; clients through any member. Every
// history must be linearizable, and a seed must replay exactly. And the checker
// must catch stale reads, a real feature that is not linearizable by design.
// The seeds run on a worker thread (test/support/sim-worker.ts says why).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { KvSimResult } from "../../src/sim/kv-cluster.js";
import { simulateSeeds } from "../support/sim-worker.js";

const range = (first: number, n: number) => Array.from({ length: n }, (_, i) => first + i);

function resultOf(o: Awaited<ReturnType<typeof simulateSeeds>>[number]): KvSimResult {
  if ("error" in o) assert.fail(`seed ${o.seed} failed: ${o.error}\nreplay: npm run sim:kv -- --seed ${o.seed}`);
  return o.result;
}

describe("the cluster's code under simulated faults, checked for linearizability", () => {
  it("60 seeds: every history is linearizable", async () => {
    const sum = {
      operations: 0,
      unknown: 0,
      refused: 0,
      crashes: 0,
      pauses: 0,
      partitions: 0,
      forwarded: 0,
      snapshots: 0,
    };
    const outcomes = await simulateSeeds(range(1, 60));
    assert.equal(outcomes.length, 60);
    for (const o of outcomes) {
      const r = resultOf(o);
      assert.equal(
        r.verdict.ok,
        true,
        `seed ${o.seed}: ${r.verdict.ok === true ? "" : r.verdict.detail} (replay: npm run sim:kv -- --seed ${o.seed})`,
      );
      sum.operations += r.operations;
      sum.unknown += r.unknown;
      sum.refused += r.refused;
      sum.crashes += r.crashes;
      sum.pauses += r.pauses;
      sum.partitions += r.partitions;
      sum.forwarded += r.forwarded;
      sum.snapshots += r.snapshotsInstalled;
    }
    assert.ok(sum.operations > 30_000, `${sum.operations} operations checked`);
    // The faults happened, and reached the paths they are for.
    assert.ok(sum.crashes > 0 && sum.pauses > 0 && sum.partitions > 0, JSON.stringify(sum));
    assert.ok(sum.unknown > 0, "some outcomes were unknown (timeouts, members lost mid-request)");
    assert.ok(sum.refused > 0, "some requests were refused as not applied (UNAVAILABLE)");
    assert.ok(sum.forwarded > sum.operations / 4, "members forwarded to leaders");
    assert.ok(sum.snapshots > 0, "members behind caught up by snapshot");
  });

  it("replays a seed exactly", async () => {
    const [a, b] = await simulateSeeds([11, 11]);
    assert.deepEqual(resultOf(a!), resultOf(b!));
  });

  it("has teeth: stale reads (served by any replica, without ReadIndex) are caught", async () => {
    const outcomes = await simulateSeeds(range(1, 3), { staleReads: true });
    const caught = outcomes.map(resultOf).filter((r) => r.verdict.ok === false);
    assert.ok(caught.length > 0, "no seed in 1..3 exposed stale reads");
    for (const r of caught) assert.match(r.verdict.ok === false ? r.verdict.detail : "", /read = /);
  });
});
