// npm run bench:redis: redis-benchmark against Redis and against Piccolo's
// Redis port, side by side in one run, alternating A B A B.
//
// Needs the Debian packages redis-server and redis-tools (it installs
// nothing: it says what is missing and exits 2). Starts a redis-server with
// persistence off and Piccolo nodes (default shards, and --shards 0) on free
// loopback ports; for each configuration runs
//   redis-benchmark -t set,get,incr,mset -c 50 -d 64 -r 100000 -P 1 / -P 16
//   redis-benchmark -t set,get,incr,mset -c 1 -P 1 (latency)
// for --rounds rounds (default 3), and prints the median ops/s of each
// target, the Piccolo/Redis ratio per cell, and p50/p99. Writes
// bench/results/redis.json and redis.svg.
//
//   node dist/bench/redis.js [--rounds 3] [--quick]
import { availableParallelism } from "node:os";
import { mkdirSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { barChart, machine, median, progress, progressDone, table } from "./lib/report.js";
import { type RespServer, redisBenchmark, requireTools, startPiccoloResp, startRedis } from "./lib/resp.js";

const { values: o } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    quick: { type: "boolean", default: false },
    out: { type: "string", default: "bench/results" },
  },
});
const rounds = Number(o.rounds);
const scale = o.quick ? 0.25 : 1;

requireTools("bench:redis", ["redis-server", "redis-cli", "redis-benchmark"]);

// In memory, as the Redis it is compared with runs without persistence (bench:durable compares the durable node).
const startPiccolo = (shards: number, name: string) =>
  startPiccoloResp(name, ["--shards", String(shards), "--in-memory"]);

const configs = [
  { name: "c50 P1", args: ["-c", "50", "-P", "1"], n: 100_000 },
  { name: "c50 P16", args: ["-c", "50", "-P", "16"], n: 400_000 },
  { name: "c1 P1", args: ["-c", "1", "-P", "1"], n: 20_000 },
];

interface Cell {
  target: string;
  config: string;
  test: string;
  round: number;
  rps: number;
  p50ms: number;
  p99ms: number;
}

function runBenchmark(t: RespServer, config: (typeof configs)[number], round: number): Cell[] {
  const n = Math.round(config.n * scale);
  return redisBenchmark(t, [
    "-t",
    "set,get,incr,mset",
    "-d",
    "64",
    "-r",
    "100000",
    "-n",
    String(n),
    ...config.args,
  ]).map((l) => ({
    target: t.name,
    config: config.name,
    test: l.test,
    round,
    rps: l.rps,
    p50ms: l.p50ms,
    p99ms: l.p99ms,
  }));
}

const defaultShards = availableParallelism();
const targets = [
  await startRedis(),
  await startPiccolo(defaultShards, `piccolo --shards ${defaultShards}`),
  await startPiccolo(0, "piccolo --shards 0"),
];
const cells: Cell[] = [];
try {
  const total = rounds * configs.length * targets.length;
  let done = 0;
  for (let round = 1; round <= rounds; round++) {
    for (const config of configs) {
      for (const t of targets) {
        progress(`round ${round}/${rounds} ${config.name} ${t.name} (${++done}/${total})`);
        cells.push(...runBenchmark(t, config, round));
      }
    }
  }
  progressDone();
} finally {
  for (const t of targets) t.child.kill("SIGTERM");
}

const tests = ["SET", "GET", "INCR", "MSET"];
const rows: (string | number)[][] = [];
const summary: Record<string, unknown>[] = [];
for (const config of configs) {
  for (const test of tests) {
    const pick = (target: string) =>
      cells.filter((c) => c.target === target && c.config === config.name && c.test === test);
    const redis = pick("redis");
    if (redis.length === 0) continue;
    const row: (string | number)[] = [config.name, test, Math.round(median(redis.map((c) => c.rps)))];
    const entry: Record<string, unknown> = { config: config.name, test, redis: stats(redis) };
    for (const t of targets.slice(1)) {
      const mine = pick(t.name);
      const ratio = median(mine.map((c) => c.rps)) / median(redis.map((c) => c.rps));
      row.push(Math.round(median(mine.map((c) => c.rps))), ratio.toFixed(2));
      entry[t.name] = { ...stats(mine), ratio };
    }
    row.push(`${median(redis.map((c) => c.p50ms))}/${median(redis.map((c) => c.p99ms))}`);
    row.push(
      `${median(pick(targets[1]!.name).map((c) => c.p50ms))}/${median(pick(targets[1]!.name).map((c) => c.p99ms))}`,
    );
    rows.push(row);
    summary.push(entry);
  }
}

function stats(cs: Cell[]) {
  return {
    rps: median(cs.map((c) => c.rps)),
    p50ms: median(cs.map((c) => c.p50ms)),
    p99ms: median(cs.map((c) => c.p99ms)),
    rounds: cs.map((c) => c.rps),
  };
}

console.log(`\nredis-benchmark -d 64 -r 100000, median of ${rounds} rounds (ops/s; latency p50/p99 ms)\n`);
console.log(
  table(
    [
      "config",
      "test",
      "redis",
      targets[1]!.name,
      "ratio",
      targets[2]!.name,
      "ratio",
      "redis p50/p99",
      "piccolo p50/p99",
    ],
    rows,
  ),
);
mkdirSync(String(o.out), { recursive: true });
writeFileSync(
  `${o.out}/redis.json`,
  `${JSON.stringify({ machine: machine(), rounds, scale, cells, summary }, null, 2)}\n`,
);
writeFileSync(
  `${o.out}/redis.svg`,
  barChart(
    "redis-benchmark: Redis vs Piccolo (median ops/s)",
    "ops/s",
    cells.length === 0
      ? []
      : configs.flatMap((config) =>
          tests.flatMap((test) =>
            targets.map((t) => ({
              group: `${test} ${config.name}`,
              series: t.name,
              value: median(
                cells
                  .filter((c) => c.target === t.name && c.config === config.name && c.test === test)
                  .map((c) => c.rps),
              ),
            })),
          ),
        ),
  ),
);
console.log(`\nwrote ${o.out}/redis.json and redis.svg`);
