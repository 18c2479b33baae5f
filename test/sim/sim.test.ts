// The deterministic simulator: hundreds of seeds must pass every safety and
// liveness check; a planted bug must be caught; a seed must replay exactly.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { profileFor, SimViolation, Simulation } from "../../src/sim/simulation.js";

describe("Raft simulation", () => {
  it("passes 300 seeds (3- and 5-node groups) with loss, duplication, reordering, partitions, crashes, torn writes, snapshots, membership changes and transfers", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const nodes = seed % 2 === 0 ? 5 : 3;
      try {
        const r = new Simulation({ seed, nodes, steps: 1500, settleTicks: 600, ...profileFor(seed) }).run();
        assert.ok(r.committed > 0, `seed ${seed} committed something`);
      } catch (err) {
        if (err instanceof SimViolation)
          assert.fail(
            `${err.message}\nreplay: npm run sim -- --seed ${seed} --nodes ${nodes} --steps 1500 --settle 600`,
          );
        throw err;
      }
    }
  });

  it("is deterministic: a seed replays to the same result", () => {
    const a = new Simulation({ seed: 77, nodes: 5, steps: 1500, settleTicks: 600 }).run();
    const b = new Simulation({ seed: 77, nodes: 5, steps: 1500, settleTicks: 600 }).run();
    assert.deepEqual(a, b);
    assert.ok(a.crashes > 0 && a.reads > 0 && a.leaders > 1, "the run exercised crashes, reads and elections");
  });

  it("exercises every fault and feature it claims to, across 100 seeds", () => {
    const total = { tornCrashes: 0, snapshotsSent: 0, confChanges: 0, transfers: 0, slowWrites: 0 };
    for (let seed = 1; seed <= 100; seed++) {
      const r = new Simulation({ seed, nodes: seed % 2 === 0 ? 5 : 3, steps: 1500, settleTicks: 600 }).run();
      for (const k of Object.keys(total) as (keyof typeof total)[]) total[k] += r[k];
    }
    for (const [k, v] of Object.entries(total)) assert.ok(v > 10, `${k}: ${v}`);
  });

  it("has teeth: it catches a planted bug (votes granted without the log check)", () => {
    let caught: SimViolation | null = null;
    for (let seed = 1; seed <= 200 && caught === null; seed++) {
      try {
        new Simulation({ seed, nodes: 3, steps: 1500, settleTicks: 600, plantedBug: "vote-ignoring-log" }).run();
      } catch (err) {
        if (!(err instanceof SimViolation)) throw err;
        if (err.kind === "safety") caught = err;
      }
    }
    assert.ok(caught !== null, "no seed in 1..200 exposed the planted bug");
    assert.match(caught.message, /leader completeness|state machine safety/);
  });

  it("has teeth: it catches a planted bug (membership changes without the one-at-a-time guards)", () => {
    let caught: SimViolation | null = null;
    let seed = 1;
    for (; seed <= 400 && caught === null; seed++) {
      try {
        new Simulation({
          seed,
          nodes: 5,
          steps: 1500,
          settleTicks: 600,
          confChangeRate: 0.05,
          plantedBug: "conf-change-unguarded",
        }).run();
      } catch (err) {
        if (!(err instanceof SimViolation)) throw err;
        if (err.kind === "safety") caught = err;
      }
    }
    assert.ok(caught !== null, "no seed in 1..400 exposed the planted bug");
    assert.match(caught.message, /leader completeness|state machine safety|two leaders/);
  });

  // The bug of Figure 8 in the Raft paper needs a leader to re-replicate an
  // old-term entry and crash before any entry of its own term exists: with
  // the default proposal rate a new leader almost always appends one at
  // once, which hides it (11,000 default seeds never exposed it). A quiet
  // client and a crash-heavy schedule make the window common.
  it("has teeth: it catches the planted Figure 8 bug (commit of an earlier term's entry by counting replicas)", () => {
    let caught: SimViolation | null = null;
    // The first seed that exposes it depends on the whole random stream (1213 since writes may stay
    // in flight); the loop stops at the first one.
    for (let seed = 1; seed <= 2000 && caught === null; seed++) {
      try {
        new Simulation({
          seed,
          nodes: 5,
          steps: 2000,
          settleTicks: 600,
          proposeRate: 0.05,
          faultRate: 8,
          confChangeRate: 0,
          plantedBug: "commit-previous-term",
        }).run();
      } catch (err) {
        if (!(err instanceof SimViolation)) throw err;
        if (err.kind === "safety") caught = err;
      }
    }
    assert.ok(caught !== null, "no seed in 1..2000 exposed the planted bug");
    assert.match(caught.message, /leader completeness|state machine safety/);
  });
});
