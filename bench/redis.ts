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
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";
import { mkdirSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { freePort } from "./lib/ports.js";
import { barChart, machine, median, progress, progressDone, table } from "./lib/report.js";

const { values: o } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    quick: { type: "boolean", default: false },
    out: { type: "string", default: "bench/results" },
  },
});
const rounds = Number(o.rounds);
const scale = o.quick ? 0.25 : 1;

for (const tool of ["redis-server", "redis-benchmark"]) {
  if (spawnSync(tool, ["--version"]).status !== 0) {
    console.error(`bench:redis needs ${tool}: apt-get install -y redis-server redis-tools (nothing was installed)`);
    process.exit(2);
  }
}

const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;

async function waitPing(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", String(port), "ping"], { encoding: "utf8" });
    if (r.stdout?.includes("PONG")) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing answers on ${port}`);
}

interface Target {
  name: string;
  port: number;
  child: ChildProcess;
}

async function startRedis(): Promise<Target> {
  const port = await freePort();
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: "ignore" },
  );
  await waitPing(port);
  return { name: "redis", port, child };
}

async function startPiccolo(shards: number, name: string): Promise<Target> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    // In memory, as the Redis it is compared with runs without persistence (bench:durable compares the durable node).
    [CLI, "server", "--port", "0", "--resp-port", String(port), "--shards", String(shards), "--in-memory"],
    {
      stdio: "ignore",
    },
  );
  await waitPing(port);
  return { name, port, child };
}

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

function runBenchmark(t: Target, config: (typeof configs)[number], round: number): Cell[] {
  const n = Math.round(config.n * scale);
  const r = spawnSync(
    "redis-benchmark",
    [
      "-h",
      "127.0.0.1",
      "-p",
      String(t.port),
      "-t",
      "set,get,incr,mset",
      "-d",
      "64",
      "-r",
      "100000",
      "-n",
      String(n),
      "--csv",
      ...config.args,
    ],
    { encoding: "utf8", timeout: 600_000 },
  );
  const cells: Cell[] = [];
  for (const line of r.stdout.split("\n")) {
    const f = line.split(",").map((x) => x.replace(/"/g, ""));
    if (f.length < 8 || f[0] === "test") continue;
    const test = f[0]!.split(" ")[0]!;
    cells.push({
      target: t.name,
      config: config.name,
      test,
      round,
      rps: Number(f[1]),
      p50ms: Number(f[4]),
      p99ms: Number(f[6]),
    });
  }
  return cells;
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
