#!/usr/bin/env node
// npm run chaos -- [--time SECONDS] [--seed S] [--clients N per protocol] [--keys K (default: time / 5, at least 3)]
//                  [--partitions P (default: the server's, 64)] [--protocols native,resp,http]
//                  [--max-fault SECONDS (default 15)] [--workload register|bank|register,bank (default register)]
//                  [--accounts N (bank; default 8)] [--tls]
// Runs the chaos harness (src/chaos/chaos.ts) against a real three-member
// cluster and a Cerializer, and checks the merged history of every protocol
// for linearizability. On failure it prints what failed, the seed, the file
// holding the history, and the command that reruns it; the exit code is 1.
import { parseArgs } from "node:util";
import { toolArgs } from "../tool-args.js";
import { DEFAULT_ACCOUNTS } from "./bank.js";
import { DEFAULT_CLIENTS_PER_PROTOCOL, defaultKeys, runChaos, WORKLOADS, type WorkloadName } from "./chaos.js";
import { DEFAULT_MAX_FAULT_MS } from "./nemesis.js";
import { PROTOCOLS, type ProtocolName } from "./protocol.js";
import { summary } from "./report.js";

const USAGE = `npm run chaos -- [options]
  --time SECONDS        seconds of faults (default 60)
  --seed S              the run's seed (default: random)
  --clients N           clients per protocol, per workload (default ${DEFAULT_CLIENTS_PER_PROTOCOL})
  --keys K              register keys (default: time / 5, at least 3)
  --partitions P        partitions (default: the server's, 64)
  --protocols LIST      of ${PROTOCOLS.join(",")} (default all)
  --max-fault SECONDS   the longest fault (default ${DEFAULT_MAX_FAULT_MS / 1000})
  --workload LIST       of ${WORKLOADS.join(",")} (default register): register is checked for
                        linearizability, bank for a constant total (transactions)
  --accounts N          bank accounts, under one hash tag (default ${DEFAULT_ACCOUNTS})
  --tls                 secured as docs/security.md sets a cluster up: TLS on every port (members
                        speak mutual TLS), a cluster secret, a password, the gateway over HTTPS`;

const values = toolArgs(USAGE, () =>
  parseArgs({
    options: {
      time: { type: "string", default: "60" },
      seed: { type: "string" },
      clients: { type: "string", default: String(DEFAULT_CLIENTS_PER_PROTOCOL) },
      keys: { type: "string" },
      partitions: { type: "string" },
      protocols: { type: "string", default: PROTOCOLS.join(",") },
      "max-fault": { type: "string", default: String(DEFAULT_MAX_FAULT_MS / 1000) },
      workload: { type: "string", default: "register" },
      accounts: { type: "string", default: String(DEFAULT_ACCOUNTS) },
      tls: { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  }),
);

function positive(name: string, text: string, integer = true): number {
  const n = Number(text);
  if (!(n > 0) || (integer && !Number.isInteger(n))) {
    console.error(`--${name} must be a positive ${integer ? "integer" : "number"}, not ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return n;
}

const seconds = positive("time", values.time, false);
const seed = values.seed !== undefined ? positive("seed", values.seed) : Math.floor(Math.random() * 2 ** 31);
const clients = positive("clients", values.clients);
const protocols = values.protocols.split(",").map((p) => p.trim()) as ProtocolName[];
for (const p of protocols)
  if (!PROTOCOLS.includes(p)) {
    console.error(`--protocols takes ${PROTOCOLS.join(", ")}; not ${JSON.stringify(p)}`);
    process.exit(2);
  }
const workloads = values.workload.split(",").map((w) => w.trim()) as WorkloadName[];
for (const w of workloads)
  if (!WORKLOADS.includes(w)) {
    console.error(`--workload takes ${WORKLOADS.join(", ")}; not ${JSON.stringify(w)}`);
    process.exit(2);
  }
const accounts = positive("accounts", values.accounts);
if (accounts < 2) {
  console.error("--accounts must be at least 2 (a transfer needs two accounts)");
  process.exit(2);
}
const keys = values.keys !== undefined ? positive("keys", values.keys) : defaultKeys(seconds);
const partitions = values.partitions !== undefined ? positive("partitions", values.partitions) : undefined;
const maxFaultMs = positive("max-fault", values["max-fault"], false) * 1000;

console.log(
  `chaos: seed ${seed}, ${seconds} s of faults (up to ${maxFaultMs / 1000} s each), ` +
    `${partitions ?? "default (64)"} partitions, ${clients} clients per protocol (${protocols.join(", ")}), ` +
    `workloads ${[
      workloads.includes("register") ? `register (${keys} keys)` : "",
      workloads.includes("bank") ? `bank (${accounts} accounts)` : "",
    ]
      .filter((w) => w !== "")
      .join(", ")}`,
);
const r = await runChaos({
  seed,
  seconds,
  clientsPerProtocol: clients,
  keys,
  ...(partitions === undefined ? {} : { partitions }),
  protocols,
  workloads,
  accounts,
  maxFaultMs,
  historyDir: process.cwd(),
  secure: values.tls,
  log: (line) => console.log(line),
});
for (const line of summary(r)) console.log(line);
if (!r.passed) {
  const flags = [
    `--seed ${seed}`,
    `--time ${values.time}`,
    values.clients !== String(DEFAULT_CLIENTS_PER_PROTOCOL) ? `--clients ${clients}` : "",
    values.keys !== undefined ? `--keys ${keys}` : "",
    partitions !== undefined ? `--partitions ${partitions}` : "",
    values.protocols !== PROTOCOLS.join(",") ? `--protocols ${values.protocols}` : "",
    maxFaultMs !== DEFAULT_MAX_FAULT_MS ? `--max-fault ${maxFaultMs / 1000}` : "",
    values.workload !== "register" ? `--workload ${values.workload}` : "",
    accounts !== DEFAULT_ACCOUNTS ? `--accounts ${accounts}` : "",
    values.tls ? "--tls" : "",
  ].filter((f) => f !== "");
  console.error(`FAIL (seed ${seed})`);
  if (r.historyFile !== null) console.error(`history: ${r.historyFile}`);
  console.error(`rerun: npm run chaos -- ${flags.join(" ")} (the seed fixes the choices; real timing may differ)`);
  process.exit(1);
}
