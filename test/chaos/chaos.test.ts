// A short chaos run in the suite: a real three-member cluster, four clients,
// kill -9, SIGSTOP and network partitions (one-way and both ways) of members
// for 20 seconds, and the whole history
// checked for linearizability. `npm run chaos -- --time 600` runs long ones.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runChaos } from "../../src/chaos/chaos.js";

describe("chaos", () => {
  it("20 s of kill -9, pauses and partitions on a real cluster: the history is linearizable", {
    timeout: 120_000,
  }, async () => {
    const seed = Number(process.env.PICCOLO_CHAOS_SEED ?? 20261125);
    const r = await runChaos({ seed, seconds: 20 });
    assert.equal(
      r.verdict.ok,
      true,
      `seed ${seed}: ${r.verdict.ok === true ? "" : r.verdict.detail}; history in ${r.historyFile}`,
    );
    assert.ok(
      r.kills + r.pauses + r.partitions >= 4,
      `faults happened (${r.kills} kills, ${r.pauses} pauses, ${r.partitions} partitions)`,
    );
    assert.ok(r.ok > 500, `clients got answers (${r.ok} of ${r.operations})`);
  });
});
