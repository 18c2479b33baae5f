#!/usr/bin/env node
// npm run chaos -- [--time SECONDS] [--seed S] [--clients N per protocol] [--keys K (default: time / 5, at least 3)]
//                  [--partitions P (default: the server's, 64)] [--protocols native,resp,http]
//                  [--max-fault SECONDS (default 15)]
// Runs the chaos harness (src/chaos/chaos.ts) against a real three-member
// cluster and a Cerializer, and checks the merged history of every protocol
// for linearizability. On failure it prints what failed, the seed, the file
// holding the history, and the command that reruns it; the exit code is 1.
import { parseArgs } from "node:util";
import { DEFAULT_CLIENTS_PER_PROTOCOL, defaultKeys, runChaos } from "./chaos.js";
import { DEFAULT_MAX_FAULT_MS } from "./nemesis.js";
import { PROTOCOLS, type ProtocolName } from "./protocol.js";
import { summary } from "./report.js";

const { values } = parseArgs({
  options: {
    time: { type: "string", default: "60" },
    seed: { type: "string" },
    clients: { type: "string", default: String(DEFAULT_CLIENTS_PER_PROTOCOL) },
    keys: { type: "string" },
    partitions: { type: "string" },
    protocols: { type: "string", default: PROTOCOLS.join(",") },
    "max-fault": { type: "string", default: String(DEFAULT_MAX_FAULT_MS / 1000) },
  },
});

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
const keys = values.keys !== undefined ? positive("keys", values.keys) : defaultKeys(seconds);
const partitions = values.partitions !== undefined ? positive("partitions", values.partitions) : undefined;
const maxFaultMs = positive("max-fault", values["max-fault"], false) * 1000;

console.log(
  `chaos: seed ${seed}, ${seconds} s of faults (up to ${maxFaultMs / 1000} s each), ` +
    `${partitions ?? "default (64)"} partitions, ${clients} clients per protocol (${protocols.join(", ")}), ${keys} keys`,
);
const r = await runChaos({
  seed,
  seconds,
  clientsPerProtocol: clients,
  keys,
  ...(partitions === undefined ? {} : { partitions }),
  protocols,
  maxFaultMs,
  historyDir: process.cwd(),
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
  ].filter((f) => f !== "");
  console.error(`FAIL (seed ${seed})`);
  if (r.historyFile !== null) console.error(`history: ${r.historyFile}`);
  console.error(`rerun: npm run chaos -- ${flags.join(" ")} (the seed fixes the choices; real timing may differ)`);
  process.exit(1);
}
