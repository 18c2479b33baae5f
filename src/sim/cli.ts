#!/usr/bin/env node
// npm run sim -- [--seeds N] [--seed S] [--first S] [--nodes 3|5] [--steps K]
//   [--settle K] [--fault-rate X] [--propose-rate P] [--conf-change-rate C]
//   [--planted commit-previous-term|vote-ignoring-log|conf-change-unguarded]
// Runs the deterministic Raft simulation for many seeds (alternating 3- and
// 5-node groups unless --nodes is given). A failure prints the seed and the
// exact command that replays it.
import { parseArgs } from "node:util";
import { toolArgs } from "../tool-args.js";
import { type PlantedBug, profileFor, SimViolation, Simulation } from "./simulation.js";

const USAGE = `npm run sim -- [options]: the deterministic Raft simulation, many seeds
  --seeds N             how many seeds (default 100), from --first S (default 1)
  --seed S              one seed only (what a failure's replay line gives)
  --nodes 3|5           the group's size (default: 3 and 5, alternating by seed)
  --steps K             steps per seed (default 2000), then --settle K ticks (default 600)
  --fault-rate X        the faults' rate (default: the seed's profile)
  --propose-rate P      proposals' rate (default: the seed's profile)
  --conf-change-rate C  membership changes' rate (default 0.004)
  --planted BUG         commit-previous-term | vote-ignoring-log | conf-change-unguarded: a known bug the checks must catch`;

const values = toolArgs(USAGE, () =>
  parseArgs({
    options: {
      seeds: { type: "string", default: "100" },
      seed: { type: "string" },
      first: { type: "string", default: "1" },
      nodes: { type: "string" },
      steps: { type: "string", default: "2000" },
      settle: { type: "string", default: "600" },
      planted: { type: "string" },
      "fault-rate": { type: "string" },
      "propose-rate": { type: "string" },
      "conf-change-rate": { type: "string", default: "0.004" },
      help: { type: "boolean", short: "h" },
    },
  }),
);

const seeds =
  values.seed !== undefined
    ? [Number(values.seed)]
    : Array.from({ length: Number(values.seeds) }, (_, i) => Number(values.first) + i);
const t0 = Date.now();
let committed = 0;
let reads = 0;
let quietSteps = 0;
for (const seed of seeds) {
  const nodes = values.nodes !== undefined ? Number(values.nodes) : seed % 2 === 0 ? 5 : 3;
  const profile = profileFor(seed);
  const faultRate = values["fault-rate"] !== undefined ? Number(values["fault-rate"]) : profile.faultRate;
  const proposeRate = values["propose-rate"] !== undefined ? Number(values["propose-rate"]) : profile.proposeRate;
  try {
    const r = new Simulation({
      seed,
      nodes,
      steps: Number(values.steps),
      settleTicks: Number(values.settle),
      plantedBug: values.planted as PlantedBug | undefined,
      confChangeRate: Number(values["conf-change-rate"]),
      faultRate,
      proposeRate,
    }).run();
    committed += r.committed;
    reads += r.reads;
    quietSteps += r.quietSteps;
  } catch (err) {
    if (!(err instanceof SimViolation)) throw err;
    // With the planted bug, liveness failures are expected (it drops the
    // election's empty entry); only safety violations count.
    if (values.planted !== undefined && err.kind === "liveness") continue;
    console.error(`FAIL ${err.message}`);
    console.error(
      `replay: npm run sim -- --seed ${seed} --nodes ${nodes} --steps ${values.steps} --settle ${values.settle} --fault-rate ${faultRate} --propose-rate ${proposeRate} --conf-change-rate ${values["conf-change-rate"]}${values.planted !== undefined ? ` --planted ${values.planted}` : ""}`,
    );
    process.exit(1);
  }
}
console.log(
  `${seeds.length} seeds passed in ${((Date.now() - t0) / 1000).toFixed(1)} s (${committed} entries committed, ${reads} linearizable reads checked, ${quietSteps} node-steps quiet)`,
);
