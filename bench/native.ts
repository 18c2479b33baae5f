// npm run bench:native: issue #19's workloads (bench/lib/workloads.ts: SET as
// put, GET as get, MSET as a txn of 10 puts and as an mput of 10 keys, at
// -c 50 -P 1, -c 50 -P 16 and -c 1; INCR has no native request) over the native
// protocol, through bench/lib/native-load.ts (worker threads writing
// pre-laid-out frames: redis-benchmark's model, not the capnp-es client),
// against Piccolo in memory with --shards 0 (maps on the IO thread), 1 and 2,
// and against a trivial endpoint (bench/lib/native-sink.ts) that shows what
// the generator reaches when the server costs next to nothing. The order of
// the targets is reversed every round, so noise hits them alike. Prints
// ops/s, p50/p99 (HDR histogram, from each batch's write as redis-benchmark
// measures), the ratio to --shards 0, and what the generator itself used
// (CPU per request, cores, event-loop utilisation); writes
// bench/results/native.json and native.svg.
//
// bench:redis runs the same generator beside redis-benchmark on the same
// nodes, for the native-against-RESP comparison of issue #19.
//
//   node dist/bench/native.js [--layouts 0,1,2] [--rounds 3] [--quick] [--threads N] [--skip-sink]
import { mkdirSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { DEFAULT_THREADS, nativeLoad } from "./lib/native-load.js";
import { CLI } from "./lib/piccolo.js";
import { freePort } from "./lib/ports.js";
import { procs, waitLine } from "./lib/procs.js";
import { barChart, gitCommit, machine, median, progress, progressDone, table } from "./lib/report.js";
import { KEYSPACE, nativeTests, VALUE_BYTES, WORKLOADS } from "./lib/workloads.js";

const BENCH = "bench:native";
const { values: o } = parseArgs({
  options: {
    layouts: { type: "string", default: "0,1,2" },
    rounds: { type: "string" },
    quick: { type: "boolean", default: false },
    threads: { type: "string" },
    "skip-sink": { type: "boolean", default: false },
    out: { type: "string", default: "bench/results" },
  },
});
const rounds = Number(o.rounds ?? (o.quick ? 2 : 3));
const scale = o.quick ? 0.1 : 1;
const threads = o.threads === undefined ? undefined : Number(o.threads);
const P = procs(BENCH, "the nodes");

interface Target {
  name: string;
  port: number;
}
const targets: Target[] = [];
progress("starting the nodes");
if (!o["skip-sink"]) {
  const port = await freePort();
  const c = P.child("sink", process.execPath, [
    new URL("./lib/native-sink.js", import.meta.url).pathname,
    "--port",
    String(port),
    "--value-bytes",
    String(VALUE_BYTES),
  ]);
  await waitLine(c, /sink listening/, "sink");
  targets.push({ name: "trivial endpoint", port });
}
for (const shards of String(o.layouts)
  .split(",")
  .filter((s) => s.trim() !== "")
  .map(Number)) {
  const port = await freePort();
  const c = P.child(`--shards ${shards}`, process.execPath, [
    CLI,
    "server",
    "--port",
    String(port),
    "--resp-port",
    "0",
    "--shards",
    String(shards),
    "--in-memory",
  ]);
  await waitLine(c, /listening on/, `piccolo --shards ${shards}`);
  c.stdout!.resume();
  targets.push({ name: `--shards ${shards}`, port });
}
progressDone();

interface Run {
  target: string;
  workload: string;
  test: string;
  round: number;
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: number;
  cpuUsPerRequest: number;
  cpuCores: number;
  elu: number[];
}
const runs: Run[] = [];
const total = rounds * targets.length * WORKLOADS.length;
let done = 0;
for (let round = 1; round <= rounds; round++) {
  const order = round % 2 === 1 ? targets : [...targets].reverse();
  for (const w of WORKLOADS)
    for (const t of order) {
      progress(`round ${round}/${rounds} ${w.name} ${t.name} (${++done}/${total})`);
      for (const { test: redisTest, label: test, op } of nativeTests(w)) {
        const r = await nativeLoad({
          port: t.port,
          connections: w.connections,
          pipeline: w.pipeline,
          requests: Math.round((w.requestsFor?.[redisTest] ?? w.requests) * scale),
          keyspace: KEYSPACE,
          valueBytes: VALUE_BYTES,
          test: op,
          ...(threads === undefined ? {} : { threads }),
          seed: round,
        });
        runs.push({
          target: t.name,
          workload: w.name,
          test,
          round,
          rps: r.rps,
          p50ms: r.p50ms,
          p99ms: r.p99ms,
          errors: r.errors,
          cpuUsPerRequest: (r.cpuCores * r.elapsedMs * 1000) / r.requests,
          cpuCores: r.cpuCores,
          elu: r.elu,
        });
      }
    }
}
progressDone();
P.cleanup();

const summary = targets.flatMap((t) =>
  WORKLOADS.flatMap((w) =>
    nativeTests(w).map(({ label: test }) => {
      const mine = runs.filter((r) => r.target === t.name && r.workload === w.name && r.test === test);
      const base = runs.filter((r) => r.target === "--shards 0" && r.workload === w.name && r.test === test);
      const rps = median(mine.map((r) => r.rps));
      return {
        target: t.name,
        workload: w.name,
        test,
        rps,
        vsShards0: base.length > 0 ? rps / median(base.map((r) => r.rps)) : null,
        p50ms: median(mine.map((r) => r.p50ms)),
        p99ms: median(mine.map((r) => r.p99ms)),
        cpuUsPerRequest: median(mine.map((r) => r.cpuUsPerRequest)),
        cpuCores: median(mine.map((r) => r.cpuCores)),
        eluMax: Math.max(...mine.flatMap((r) => r.elu)),
        errors: mine.reduce((n, r) => n + r.errors, 0),
      };
    }),
  ),
);
console.log(
  `\n${BENCH}: native protocol, -d ${VALUE_BYTES} -r ${KEYSPACE}, median of ${rounds} rounds; generator: ` +
    `bench/lib/native-load.ts, ${threads ?? DEFAULT_THREADS} threads\n`,
);
console.log(
  table(
    [
      "target",
      "workload",
      "test",
      "ops/s",
      "p50/p99 ms",
      "vs --shards 0",
      "gen CPU us/req",
      "gen cores",
      "max ELU",
      "errors",
    ],
    summary.map((s) => [
      s.target,
      s.workload,
      s.test,
      Math.round(s.rps),
      `${s.p50ms.toFixed(3)}/${s.p99ms.toFixed(3)}`,
      s.vsShards0 === null ? "-" : s.vsShards0.toFixed(2),
      s.cpuUsPerRequest.toFixed(1),
      s.cpuCores.toFixed(2),
      s.eluMax.toFixed(2),
      s.errors,
    ]),
  ),
);
const out = String(o.out);
mkdirSync(out, { recursive: true });
writeFileSync(
  `${out}/native.json`,
  `${JSON.stringify({ machine: machine(), commit: gitCommit(), rounds, scale, threads: threads ?? DEFAULT_THREADS, summary, runs }, null, 2)}\n`,
);
writeFileSync(
  `${out}/native.svg`,
  barChart(
    "Piccolo native protocol (bench/lib/native-load.ts): ops/s by layout, median",
    "ops/s",
    summary
      .filter((s) => s.target !== "trivial endpoint")
      .map((s) => ({ group: `${s.test} ${s.workload}`, series: s.target, value: s.rps })),
  ),
);
console.log(`\nwrote ${out}/native.json and native.svg`);
