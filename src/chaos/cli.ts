#!/usr/bin/env node
// npm run chaos -- [--time SECONDS] [--seed S] [--clients N] [--keys K (default: time / 5, at least 3)]
// Runs the chaos harness (src/chaos/chaos.ts) against a real three-member
// cluster and checks the history for linearizability. On failure it prints
// the seed, the checker's explanation, and the file holding the history.
import { parseArgs } from "node:util";
import { runChaos } from "./chaos.js";

const { values } = parseArgs({
  options: {
    time: { type: "string", default: "60" },
    seed: { type: "string" },
    clients: { type: "string", default: "4" },
    keys: { type: "string" },
  },
});
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
console.log(`chaos: seed ${seed}, ${values.time} s of faults`);
const r = await runChaos({
  seed,
  seconds: Number(values.time),
  clients: Number(values.clients),
  // Per-key histories must stay small enough to check: scale keys with time.
  keys: values.keys !== undefined ? Number(values.keys) : Math.max(3, Math.ceil(Number(values.time) / 5)),
  historyDir: process.cwd(),
  log: (line) => console.log(line),
});
console.log(
  `${r.operations} operations (${r.ok} with an answer, ${r.unknown} unknown), ${r.kills} kills, ${r.pauses} pauses, ${r.partitions} partitions`,
);
if (r.verdict.ok === true) console.log("linearizable: yes");
else {
  console.error(`FAIL (seed ${seed}): ${r.verdict.detail}`);
  console.error(`history: ${r.historyFile}`);
  console.error(
    `rerun: npm run chaos -- --seed ${seed} --time ${values.time} (the seed fixes the choices; real timing may differ)`,
  );
  process.exit(1);
}
