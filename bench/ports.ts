// npm run bench:ports: what a request costs a node in CPU time on its native
// port against its Redis port, both measured on ONE running node, the two
// load generators taking turns (native-load first in odd rounds,
// redis-benchmark first in even ones). On a shared, noisy machine this is
// the steadiest comparison of the two ports' paths: the same process, the
// same map, the same neighbours' load, seconds apart. bench:cpu starts a
// fresh server per run instead, which compares builds and Redis.
//
// For each --piccolo (a built checkout and its flags; default: this one, in
// memory), one node with both ports, its keys written first (SET at -P 16),
// then a warm-up of a fifth of each run on each port; then per round and per test, each port's run, the server's user + system
// CPU time (/proc/PID/stat, all threads) over it divided by its requests.
// Tests (bench/lib/workloads.ts's native stand-ins, decision 0315): put (SET),
// get (GET), txn and mput (MSET: 10 keys), all at -c 50 -P 16, -d 64 -r 100000.
//
//   node dist/bench/ports.js [--rounds 3] [--requests 1000000] [--tests put,get,txn,mput]
//     [--piccolo "label=DIR:args"]...
//
// Linux only (/proc). Needs redis-benchmark.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type NativeTest, nativeLoad } from "./lib/native-load.js";
import { freePort } from "./lib/ports.js";
import { gitCommit, median, progress, progressDone, table } from "./lib/report.js";
import { requireTools, waitPing } from "./lib/resp.js";

const { values: o } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    requests: { type: "string", default: "1000000" },
    tests: { type: "string", default: "put,get,txn,mput" },
    piccolo: { type: "string", multiple: true, default: [] },
  },
});
requireTools("bench:ports", ["redis-benchmark"]);
const rounds = Number(o.rounds);
const tests = String(o.tests).split(",") as NativeTest[];
/** The Redis test each native request stands beside. */
const RESP: Record<NativeTest, string> = { put: "set", get: "get", txn: "mset", mput: "mset" };
/** Requests per run: the multi-key ones write 10 keys each, so a tenth as many. */
const requestsOf = (t: NativeTest) => Math.round(Number(o.requests) / (t === "txn" || t === "mput" ? 10 : 1));

const here = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const specs = (o.piccolo.length > 0 ? o.piccolo : [`piccolo=${here}:--in-memory`]).map((spec) => {
  const eq = spec.indexOf("=");
  const rest = eq > 0 ? spec.slice(eq + 1) : "";
  const colon = rest.indexOf(":");
  return {
    name: eq > 0 ? spec.slice(0, eq) : spec,
    root: resolve(colon >= 0 ? rest.slice(0, colon) : rest || here),
    args: (colon >= 0 ? rest.slice(colon + 1) : "--in-memory").split(" ").filter((a) => a !== ""),
  };
});

const tick = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;
/** User and system CPU microseconds of a process so far, all threads (fields 14 and 15 of /proc/PID/stat). */
function cpuUs(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: (Number(f[11]) / tick) * 1e6, sys: (Number(f[12]) / tick) * 1e6 };
}

async function native(port: number, test: NativeTest, requests: number): Promise<void> {
  const r = await nativeLoad({
    port,
    connections: 50,
    pipeline: 16,
    requests,
    keyspace: 100_000,
    valueBytes: 64,
    test,
  });
  if (r.errors > 0) throw new Error(`native-load ${test}: ${r.errors} error answers`);
}

function resp(port: number, test: string, requests: number): void {
  const r = spawnSync(
    "redis-benchmark",
    ["-p", String(port), "-t", test, "-c", "50", "-P", "16", "-n", String(requests), "-d", "64", "-r", "100000", "-q"],
    { encoding: "utf8", timeout: 600_000 },
  );
  if (r.status !== 0) throw new Error(`redis-benchmark failed: ${r.stderr}`);
}

interface Cell {
  piccolo: string;
  test: NativeTest;
  via: "native" | "resp";
  round: number;
  userUs: number;
  sysUs: number;
}
const cells: Cell[] = [];
for (const s of specs) {
  const nativePort = await freePort();
  const respPort = await freePort();
  const cli = join(s.root, "dist/src/cli/main.js");
  const child: ChildProcess = spawn(
    process.execPath,
    [cli, "server", "--port", String(nativePort), "--resp-port", String(respPort), ...s.args],
    { stdio: "ignore" },
  );
  try {
    await waitPing(respPort);
    progress(`${s.name}: writing the keys, warming up`);
    resp(respPort, "set", 300_000);
    // A warm-up of a fifth of each run on each port, as bench:cpu does: the first runs pay the JIT.
    for (const test of tests) {
      await native(nativePort, test, Math.round(requestsOf(test) / 5));
      resp(respPort, RESP[test], Math.round(requestsOf(test) / 5));
    }
    for (let round = 1; round <= rounds; round++)
      for (const test of tests) {
        const order = round % 2 === 1 ? (["native", "resp"] as const) : (["resp", "native"] as const);
        for (const via of order) {
          progress(`${s.name}: round ${round}/${rounds} ${test} ${via}`);
          const n = requestsOf(test);
          const before = cpuUs(child.pid!);
          if (via === "native") await native(nativePort, test, n);
          else resp(respPort, RESP[test], n);
          const after = cpuUs(child.pid!);
          cells.push({
            piccolo: s.name,
            test,
            via,
            round,
            userUs: (after.user - before.user) / n,
            sysUs: (after.sys - before.sys) / n,
          });
        }
      }
  } finally {
    child.kill("SIGKILL");
  }
}
progressDone();

const rows: (string | number)[][] = [];
for (const s of specs)
  for (const test of tests) {
    const of = (via: Cell["via"]) => cells.filter((c) => c.piccolo === s.name && c.test === test && c.via === via);
    const total = (via: Cell["via"]) => median(of(via).map((c) => c.userUs + c.sysUs));
    const show = (via: Cell["via"]) =>
      `${median(of(via).map((c) => c.userUs)).toFixed(2)} + ${median(of(via).map((c) => c.sysUs)).toFixed(2)}`;
    const byRound = of("native").map((n) => {
      const r = of("resp").find((c) => c.round === n.round)!;
      return ((n.userUs + n.sysUs) / (r.userUs + r.sysUs)).toFixed(2);
    });
    rows.push([
      s.name,
      `${test} (${RESP[test].toUpperCase()})`,
      show("native"),
      show("resp"),
      (total("native") / total("resp")).toFixed(2),
      byRound.join(" "),
    ]);
  }
console.log(
  `\nserver CPU per request, us (user + sys), -c 50 -P 16 -d 64 -r 100000, one node per build, both ports; ` +
    `median of ${rounds} rounds; commit ${gitCommit()}\n`,
);
console.log(table(["piccolo", "test (Redis's)", "native", "RESP", "native/RESP", "by round"], rows));
