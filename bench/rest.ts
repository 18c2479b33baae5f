// npm run bench:rest: HTTP GET and PUT through the Cerializer (Piccolo's
// JSON/REST gateway) against the same workload on etcd's own JSON gateway
// (grpc-gateway: POST /v3/kv/range and /v3/kv/put), side by side in one run.
//
// Starts a Piccolo node, a Cerializer in front of it, and a single-member
// etcd (Debian package etcd-server; data dir in a temp dir) on free loopback
// ports; preloads --keys keys (16-byte keys, 64-byte values) into both; warms
// both up for --warmup seconds per workload; then for --rounds rounds runs
// autocannon (--connections connections, pipelining 1, --duration seconds):
//   GET  a random preloaded key
//   PUT  a random preloaded key, a new 64-byte value
// alternating the targets A B / B A round by round so that machine noise hits
// both alike. Prints the median requests/s, p50 and p99 (from every response's
// own time, microsecond resolution), non-2xx and error counts, and the
// Piccolo/etcd ratio. Writes bench/results/rest.json, rest.svg and rest.md.
//
// Without etcd it prints how to install it; running as root it installs it
// (apt-get update && apt-get install -y etcd-server); if that fails too it
// runs the Piccolo half alone and says so in the report. Older etcd (3.3)
// serves the gateway under /v3beta: the path is detected by trying.
//
// Caveat printed with the results: etcd fsyncs its WAL on every put (batched
// across concurrent puts) and runs Raft even with one member; a single
// Piccolo node keeps its data in memory. The PUT ratio compares a durable
// write with an in-memory one.
//
//   node dist/bench/rest.js [--duration 8] [--connections 50] [--rounds 2]
//     [--warmup 2] [--keys 10000] [--etcd etcd] [--out bench/results]
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { findEtcd, startEtcd } from "./lib/etcd.js";
import {
  cerializerTarget,
  checkValues,
  closeAgents,
  etcdTarget,
  type HttpCell as Cell,
  type HttpTarget as Target,
  preload,
  runHttp,
} from "./lib/http.js";
import { startCerializer } from "./lib/piccolo.js";
import { procs } from "./lib/procs.js";
import { barChart, machine, markdownTable, median, progress, progressDone, table } from "./lib/report.js";

const { values: o } = parseArgs({
  options: {
    rounds: { type: "string", default: "2" },
    duration: { type: "string", default: "8" },
    connections: { type: "string", default: "50" },
    warmup: { type: "string", default: "2" },
    keys: { type: "string", default: "10000" },
    etcd: { type: "string", default: "etcd" },
    out: { type: "string", default: "bench/results" },
  },
});
function positiveInt(name: string, s: string | undefined): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`bench:rest: --${name} must be a positive integer (got ${s})`);
    process.exit(2);
  }
  return n;
}
const rounds = positiveInt("rounds", o.rounds);
const duration = positiveInt("duration", o.duration);
const connections = positiveInt("connections", o.connections);
const warmup = positiveInt("warmup", o.warmup);
const keyCount = positiveInt("keys", o.keys);
const etcdBin = String(o.etcd);
const outDir = String(o.out);
const loadAtStart = loadavg().map((x) => Number(x.toFixed(2)));

const children = procs("bench:rest", "the node, the Cerializer and etcd");
const { version: etcdVersion, missing: etcdMissing } = findEtcd("bench:rest", etcdBin);

// ---- the two systems -------------------------------------------------------

// Durable as it starts by default (fsync everysec), in a fresh directory; etcd is durable too.
const dataDir = mkdtempSync(join(tmpdir(), "piccolo-bench-rest-"));
children.onCleanup(() => rmSync(dataDir, { recursive: true, force: true }));
children.onCleanup(closeAgents);
const targets: Target[] = [cerializerTarget("piccolo", await startCerializer(children, { dataDir }))];
let etcdPrefix = "";
if (etcdVersion !== null) {
  const { base, prefix } = await startEtcd(children, etcdBin, etcdVersion);
  etcdPrefix = prefix;
  targets.push(etcdTarget("etcd", base, prefix));
}

// Preload every key into both, 64 requests at a time, and read some back.
for (const t of targets) {
  progress(`preloading ${keyCount} keys into ${t.name}`);
  await preload(t, keyCount);
  await checkValues(t, keyCount, "after the preload");
}
progressDone();

// ---- the load --------------------------------------------------------------

const run = (t: Target, w: "GET" | "PUT", round: number, seconds: number) =>
  runHttp(t, w, round, { seconds, connections, keyCount });

const workloads = ["GET", "PUT"] as const;
const started = Date.now();
// Warm-up: JIT in the gateway and the node, connection pools, etcd's first WAL segments.
for (const w of workloads)
  for (const t of targets) {
    progress(`warm-up ${w} ${t.name} (${warmup} s)`);
    await run(t, w, 0, warmup);
  }
const cells: Cell[] = [];
for (let round = 1; round <= rounds; round++)
  for (const w of workloads)
    for (const t of round % 2 ? targets : [...targets].reverse()) {
      progress(`round ${round}/${rounds} ${w} ${t.name} (${duration} s)`);
      const c = await run(t, w, round, duration);
      cells.push(c);
      progress(`round ${round}/${rounds} ${w} ${t.name}: ${Math.round(c.rps)} req/s, p99 ${c.p99ms.toFixed(2)} ms`);
    }
progressDone();
for (const t of targets) await checkValues(t, keyCount, "after the load");
const loadSeconds = (Date.now() - started) / 1000;
children.cleanup();

// ---- the report ------------------------------------------------------------

const pick = (target: string, w: string) => cells.filter((c) => c.target === target && c.workload === w);
const hasEtcd = targets.length === 2;
const fmt = (n: number) => (Number.isNaN(n) ? "n/a" : n.toFixed(2));
const lat = (cs: Cell[]) =>
  cs.length ? `${fmt(median(cs.map((c) => c.p50ms)))} / ${fmt(median(cs.map((c) => c.p99ms)))}` : "n/a";
const sum = (cs: Cell[], f: (c: Cell) => number) => cs.reduce((a, c) => a + f(c), 0);
const bad = (f: (c: Cell) => number) => (w: string) =>
  hasEtcd ? `${sum(pick("piccolo", w), f)} / ${sum(pick("etcd", w), f)}` : String(sum(pick("piccolo", w), f));

const rows: (string | number)[][] = [];
const summary: Record<string, unknown>[] = [];
for (const w of workloads) {
  const p = pick("piccolo", w);
  const e = pick("etcd", w);
  const pr = median(p.map((c) => c.rps));
  const er = hasEtcd ? median(e.map((c) => c.rps)) : Number.NaN;
  rows.push([
    w,
    Math.round(pr).toLocaleString("en-US"),
    hasEtcd ? Math.round(er).toLocaleString("en-US") : "n/a",
    hasEtcd ? (pr / er).toFixed(2) : "n/a",
    lat(p),
    lat(e),
    bad((c) => c.non2xx)(w),
    bad((c) => c.errors)(w),
  ]);
  summary.push({
    workload: w,
    piccolo: { rps: pr, p50ms: median(p.map((c) => c.p50ms)), p99ms: median(p.map((c) => c.p99ms)) },
    ...(hasEtcd
      ? {
          etcd: { rps: er, p50ms: median(e.map((c) => c.p50ms)), p99ms: median(e.map((c) => c.p99ms)) },
          ratio: pr / er,
        }
      : {}),
  });
}
const header = [
  "workload",
  "Piccolo req/s",
  "etcd req/s",
  "ratio",
  "Piccolo p50 / p99 ms",
  "etcd p50 / p99 ms",
  hasEtcd ? "non-2xx (P / E)" : "non-2xx",
  hasEtcd ? "errors (P / E)" : "errors",
];
const perRound = cells.map((c) => [
  c.round,
  c.workload,
  c.target,
  Math.round(c.rps).toLocaleString("en-US"),
  fmt(c.p50ms),
  fmt(c.p99ms),
  fmt(c.maxMs),
  c.non2xx,
  c.errors,
]);
const perRoundHeader = ["round", "workload", "target", "req/s", "p50 ms", "p99 ms", "max ms", "non-2xx", "errors"];

const setup =
  `HTTP/1.1 through the Cerializer (one Piccolo node) vs ` +
  (hasEtcd
    ? `etcd ${etcdVersion}'s JSON gateway (${etcdPrefix}/kv/range, ${etcdPrefix}/kv/put)`
    : "nothing (no etcd)") +
  `; autocannon -c ${connections} -p 1, ${duration} s x ${rounds} rounds (median), ${warmup} s warm-up per ` +
  `workload and target; ${keyCount} keys, 16 B keys, 64 B values`;
const caveats = [
  "etcd appends every put to its WAL, fsyncs it (batched across concurrent puts) and commits it through " +
    "Raft (one member) before answering; a single Piccolo node keeps its data in memory only. The PUT ratio " +
    "compares a durable write with an in-memory one (bench:cluster compares durable with durable).",
  `All processes share this machine (${machine().cores} cores, load average ${loadAtStart.join(" ")} at the ` +
    "start): autocannon, the Cerializer, the node's IO thread and shard workers, and etcd. Numbers are noisy.",
  "The Cerializer takes the value as the raw body and answers GET with the raw bytes; etcd's gateway takes " +
    "and answers JSON with base64 keys and values, and translates to gRPC inside its process (the Cerializer " +
    "translates to Cap'n Proto over loopback TCP to the node).",
  "Latencies are measured by autocannon, in the same Node process that generates the load; p50/p99 come " +
    "from every 2xx response's own time.",
  ...(etcdMissing ? [etcdMissing] : []),
];

console.log(`\n${setup}\n`);
console.log(table(header, rows));
console.log(`\nper round:\n\n${table(perRoundHeader, perRound)}`);
console.log(`\nCaveats:\n${caveats.map((c) => `- ${c}`).join("\n")}`);

mkdirSync(outDir, { recursive: true });
writeFileSync(
  join(outDir, "rest.json"),
  `${JSON.stringify(
    {
      machine: machine(),
      loadAverageAtStart: loadAtStart,
      etcd: etcdVersion,
      etcdGatewayPrefix: etcdPrefix || null,
      etcdMissing,
      connections,
      duration,
      warmup,
      rounds,
      keyCount,
      loadSeconds,
      summary,
      cells,
    },
    null,
    2,
  )}\n`,
);
writeFileSync(
  join(outDir, "rest.svg"),
  barChart(
    `HTTP req/s: Cerializer + Piccolo vs etcd JSON gateway (c${connections}, median)`,
    "requests/s",
    workloads.flatMap((w) =>
      targets.map((t) => {
        const cs = pick(t.name, w);
        return {
          group: w,
          series: t.name,
          value: median(cs.map((c) => c.rps)),
          note: `p99 ${fmt(median(cs.map((c) => c.p99ms)))}ms`,
        };
      }),
    ),
  ),
);
writeFileSync(
  join(outDir, "rest.md"),
  [
    "# bench:rest: the Cerializer vs etcd's JSON gateway",
    "",
    `\`npm run bench:rest -- --duration ${duration} --connections ${connections} --rounds ${rounds}\`, ` +
      `${machine().date}; ${machine().cpu}, ${machine().cores} cores, Node ${process.version}.`,
    "",
    `${setup}.`,
    "",
    markdownTable(header, rows),
    "",
    "Per round:",
    "",
    markdownTable(perRoundHeader, perRound),
    "",
    "![requests/s](rest.svg)",
    "",
    "Caveats:",
    "",
    ...caveats.map((c) => `- ${c}`),
    "",
  ].join("\n"),
);
console.log(`\nwrote ${join(outDir, "rest.json")}, rest.svg and rest.md`);
