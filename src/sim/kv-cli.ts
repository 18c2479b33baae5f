#!/usr/bin/env node
// npm run sim:kv -- [--seeds N] [--seed S] [--first S] [--rounds R] [--planted stale-reads]
// Runs the replicated-KV simulation (src/sim/kv-cluster.ts) for many seeds and
// judges every history with the linearizability checker. A failure prints
// the seed, the checker's explanation, and the command that replays it.
import { parseArgs } from "node:util";
import { initHash } from "../hash.js";
import { KvSimulation } from "./kv-cluster.js";

const { values } = parseArgs({
  options: {
    seeds: { type: "string", default: "100" },
    seed: { type: "string" },
    first: { type: "string", default: "1" },
    rounds: { type: "string", default: "1500" },
    planted: { type: "string" },
  },
});
if (values.planted !== undefined && values.planted !== "stale-reads") {
  console.error("--planted: the only planted bug is stale-reads");
  process.exit(2);
}
await initHash();
const seeds =
  values.seed !== undefined
    ? [Number(values.seed)]
    : Array.from({ length: Number(values.seeds) }, (_, i) => Number(values.first) + i);
const t0 = Date.now();
let operations = 0;
let unknown = 0;
for (const seed of seeds) {
  const r = await new KvSimulation({
    seed,
    rounds: Number(values.rounds),
    plantedStaleReads: values.planted === "stale-reads",
  }).run();
  operations += r.operations;
  unknown += r.unknown;
  if (r.verdict.ok !== true) {
    console.error(`FAIL seed ${seed}: ${r.verdict.detail}`);
    console.error(
      `replay: npm run sim:kv -- --seed ${seed} --rounds ${values.rounds}${values.planted ? ` --planted ${values.planted}` : ""}`,
    );
    process.exit(1);
  }
}
console.log(
  `${seeds.length} seeds passed in ${((Date.now() - t0) / 1000).toFixed(1)} s (${operations} client operations checked, ${unknown} with unknown outcomes)`,
);
