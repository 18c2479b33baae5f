#!/usr/bin/env node
// npm run cluster: a local three-member cluster and a Cerializer, for development.
//
//   member  client port  Redis port  peer port  data
//   n1      7701         6381        7711       ./data/n1
//   n2      7702         6382        7712       ./data/n2
//   n3      7703         6383        7713       ./data/n3
//   Cerializer on http://127.0.0.1:8700 in front of all three (--cluster true),
//   started once the three listen
//
// `piccolo cluster ...` without --server looks on 7700, then on these client
// ports (src/cli/main.ts, CLUSTER_DEFAULT_SERVERS): keep the two in step.
//
// To try replacing a member: stop one (say n2), start a fourth, n4 (client
// 7704, Redis 6384, peer 7714), which introduces itself to the others, and
// move n2's replicas to it:
//   node dist/src/cli/main.js server --port 7704 --resp-port 6384 --node-id n4 \
//     --cluster <the list> --joined n4=127.0.0.1:7714 --data-dir ./data/n4
//   npx piccolo cluster replace n2 n4 --server 127.0.0.1:7701
// (this script prints the exact command).
//
// To try a restart (or a rolling restart, one member after another): each
// member's line "[n2] pid P: to restart it, kill P, then: node ..." gives
// its process id and the exact command that starts it again with the same
// flags and data, to run from this same directory (the data is under
// ./data). `kill P` sends SIGTERM: the member hands its leadership over,
// closes its clients' connections gracefully and exits 0 (docs/cluster.md,
// "Stopping, restarting and upgrading a member"); this script reports the
// exit and prints the command again. A member started again that way runs
// in your terminal, not under this script: stop it there with Ctrl-C.
//
// Logs are prefixed by process. Ctrl-C stops everything cleanly (SIGTERM to
// each, then waits). Data persists under ./data between runs; delete it to
// start over. Run `npm run build` first (npm run cluster does).
// PICCOLO_CLUSTER_PORT_OFFSET=N adds N to every port above, for a second
// copy beside the first (run from another directory: each keeps its data
// under ./data) and for test/scripts/cluster.test.ts; `piccolo cluster`
// then needs --server.
//
// A process that exits before it is listening (a port taken by a node left
// running from the README's single-node steps, say: it prints why and exits
// 71) stops the whole script: it says which one, stops the others and exits
// 1, rather than run half a cluster. Once all are listening, a member that
// exits is only reported: stopping one is how you try `cluster replace`.
import { spawn } from "node:child_process";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));
const OFFSET = Number(process.env.PICCOLO_CLUSTER_PORT_OFFSET ?? 0);
const members = [1, 2, 3].map((i) => ({
  name: `n${i}`,
  port: OFFSET + 7700 + i,
  resp: OFFSET + 6380 + i,
  peer: OFFSET + 7710 + i,
}));
const n4 = { port: OFFSET + 7704, resp: OFFSET + 6384, peer: OFFSET + 7714 };
const httpPort = OFFSET + 8700;
const list = members.map((m) => `${m.name}=127.0.0.1:${m.peer}`).join(",");
const joined = `n4=127.0.0.1:${n4.peer}`;
const children = [];

/** A member's flags: the same every time it starts (its data directory holds its Raft logs). */
function memberArgs(m) {
  return [
    "server",
    "--port",
    String(m.port),
    "--resp-port",
    String(m.resp),
    "--node-id",
    m.name,
    "--cluster",
    list,
    "--data-dir",
    `./data/${m.name}`,
    // One group worker per member: three members already share this machine's cores.
    "--shards",
    "1",
    "--log-level",
    "info",
  ];
}

/** The command line that starts `args` by hand, from this directory (the CLI's path relative to it when inside). */
function commandLine(args) {
  const rel = relative(process.cwd(), CLI);
  return ["node", rel.startsWith("..") ? CLI : rel, ...args].join(" ");
}

/** Processes not yet listening (their "listening on" line not seen). */
const starting = new Set();

function run(name, args) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  starting.add(name);
  const prefix = (stream, out) => {
    let rest = "";
    stream.on("data", (d) => {
      const lines = (rest + d.toString()).split("\n");
      rest = lines.pop();
      for (const l of lines) {
        out.write(`[${name}] ${l}\n`);
        if (out === process.stdout && / listening on /.test(l) && starting.delete(name)) {
          if (name !== "cerializer")
            console.log(`[${name}] pid ${child.pid}: to restart it, kill ${child.pid}, then: ${commandLine(args)}`);
          listening(name);
        }
      }
    });
  };
  prefix(child.stdout, process.stdout);
  prefix(child.stderr, process.stderr);
  child.on("exit", (code, signal) => {
    if (stopping) return;
    if (starting.has(name)) {
      console.error(`[${name}] could not start (exit ${signal ?? code}; its message is above): stopping the others`);
      stop(1);
    } else if (name === "cerializer") console.log(`[${name}] exited (${signal ?? code})`);
    else console.log(`[${name}] exited (${signal ?? code}); to start it again: ${commandLine(args)}`);
  });
  children.push(child);
}

/**
 * The Cerializer starts once every member listens: started beside them, it
 * found none yet and logged each as unreachable before the first probe.
 */
function listening(name) {
  if (name !== "cerializer" && members.every((m) => !starting.has(m.name)) && !cerializerStarted) {
    cerializerStarted = true;
    run("cerializer", [
      "cerializer",
      "--nodes",
      members.map((m) => `127.0.0.1:${m.port}`).join(","),
      "--cluster",
      "true",
      "--http-port",
      String(httpPort),
    ]);
  }
  if (starting.size === 0 && cerializerStarted) console.log("cluster: every process is listening");
}
let cerializerStarted = false;

let stopping = false;
function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  console.log("stopping...");
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
  Promise.all(
    children.map((c) => (c.exitCode !== null || c.signalCode !== null ? null : new Promise((r) => c.once("exit", r)))),
  ).then(() => process.exit(code));
}
process.on("SIGINT", () => stop(0));
process.on("SIGTERM", () => stop(0));

for (const m of members) run(m.name, memberArgs(m));
console.log(
  `cluster: npx piccolo put k v --server 127.0.0.1:${members[1].port}; redis-cli -p ${members[2].resp} get k; curl localhost:${httpPort}/v1/kv/k`,
);
console.log(
  OFFSET === 0
    ? "cluster: npx piccolo cluster status (finds these members without --server)"
    : `cluster: npx piccolo cluster status --server 127.0.0.1:${members[0].port}`,
);
// n4 knows the bootstrap list (which never changes) and itself in --joined.
const n4Args = ["server", "--port", n4.port, "--resp-port", n4.resp, "--node-id", "n4", "--cluster", list];
console.log(`to add a member n4: ${commandLine([...n4Args, "--joined", joined, "--data-dir", "./data/n4"])}`);
