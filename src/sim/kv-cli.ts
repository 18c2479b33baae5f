#!/usr/bin/env node
// npm run sim:kv -- [--seeds N] [--seed S] [--first S] [--seconds T] [--planted stale-reads|blind-transfers]
//                   [--workload register|bank] [--accounts N]
// Runs the cluster simulator (src/sim/kv-cluster.ts: the node's own cluster
// code on virtual time, with a simulated network and disks, and faults) for
// many seeds, and judges every history with the linearizability checker
// (or, with --workload bank, every audit of the accounts by its total). A
// failure prints the seed, what went wrong, and the command that replays it.
import { parseArgs } from "node:util";
import { toolArgs } from "../tool-args.js";
import { initHash } from "../hash.js";
import { KvSimulation } from "./kv-cluster.js";

const USAGE = `npm run sim:kv -- [options]: the cluster simulator, every history checked
  --seeds N             how many seeds (default 100), from --first S (default 1)
  --seed S              one seed only (what a failure's replay line gives)
  --seconds T           virtual seconds per seed (default 20)
  --workload W          register (default; checked for linearizability) or bank (audits by total)
  --accounts N          bank accounts (at least 2)
  --planted BUG         stale-reads | blind-transfers (with --workload bank): a known bug the checks must catch`;

const values = toolArgs(USAGE, () =>
  parseArgs({
    options: {
      seeds: { type: "string", default: "100" },
      seed: { type: "string" },
      first: { type: "string", default: "1" },
      seconds: { type: "string", default: "20" },
      planted: { type: "string" },
      workload: { type: "string", default: "register" },
      accounts: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  }),
);
if (values.planted !== undefined && values.planted !== "stale-reads" && values.planted !== "blind-transfers") {
  console.error("--planted: the planted bugs are stale-reads and blind-transfers (with --workload bank)");
  process.exit(2);
}
if (values.workload !== "register" && values.workload !== "bank") {
  console.error("--workload takes register or bank");
  process.exit(2);
}
const workload = values.workload;
const accounts = values.accounts === undefined ? undefined : Number(values.accounts);
if (accounts !== undefined && !(Number.isInteger(accounts) && accounts >= 2)) {
  console.error("--accounts takes an integer of at least 2");
  process.exit(2);
}
await initHash();
const seeds =
  values.seed !== undefined
    ? [Number(values.seed)]
    : Array.from({ length: Number(values.seeds) }, (_, i) => Number(values.first) + i);
const t0 = Date.now();
const bankSum = { transfers: 0, committed: 0, conflicts: 0, unknown: 0, refused: 0, audits: 0, auditsOk: 0 };
const sum = { operations: 0, unknown: 0, refused: 0, crashes: 0, pauses: 0, partitions: 0, forwarded: 0, events: 0 };
for (const seed of seeds) {
  const replay = `npm run sim:kv -- --seed ${seed} --seconds ${values.seconds}${values.planted ? ` --planted ${values.planted}` : ""}${workload === "bank" ? " --workload bank" : ""}${accounts !== undefined ? ` --accounts ${accounts}` : ""}`;
  let r: Awaited<ReturnType<KvSimulation["run"]>>;
  try {
    r = await new KvSimulation({
      seed,
      seconds: Number(values.seconds),
      staleReads: values.planted === "stale-reads",
      blindTransfers: values.planted === "blind-transfers",
      workload,
      ...(accounts === undefined ? {} : { accounts }),
    }).run();
  } catch (err) {
    console.error(`FAIL ${(err as Error).message}`);
    if ((err as Error).name !== "SimFailure") console.error((err as Error).stack);
    console.error(`replay: ${replay}`);
    process.exit(1);
  }
  for (const k of Object.keys(sum) as (keyof typeof sum)[]) sum[k] += r[k];
  if (r.bank !== null) for (const k of Object.keys(bankSum) as (keyof typeof bankSum)[]) bankSum[k] += r.bank[k];
  if (seeds.length === 1)
    console.log(JSON.stringify({ ...r, verdict: r.verdict.ok === true ? "linearizable" : r.verdict }, null, 1));
  if (r.verdict.ok !== true) {
    console.error(`FAIL seed ${seed}: ${r.verdict.detail}`);
    console.error(`replay: ${replay}`);
    process.exit(1);
  }
}
console.log(
  `${seeds.length} seeds passed in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${sum.operations} client operations checked (${sum.unknown} with unknown outcomes, ${sum.refused} more refused as not applied), ${sum.forwarded} forwarded; ${sum.crashes} crashes, ${sum.pauses} pauses, ${sum.partitions} partitions; ${sum.events} events`,
);
if (workload === "bank")
  console.log(
    `bank: ${bankSum.transfers} transfers (${bankSum.committed} committed, ${bankSum.conflicts} conflicts, ${bankSum.unknown} unknown, ${bankSum.refused} refused or not read), ${bankSum.audits} audits (${bankSum.auditsOk} answered, every one adding up)`,
  );
