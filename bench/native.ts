// npm run bench:native: the native protocol under a pipelined mixed load,
// against --shards 0 (maps on the IO thread), 1 and 2, alternated round by
// round so machine noise hits every layout alike. Prints ops/s and p50/p99
// latency (HDR histogram), the ratio to --shards 0, and writes
// bench/results/native.json and native.svg.
//
//   node dist/bench/native.js [--connections 16] [--pipeline 16] [--keys 100000]
//     [--value-bytes 64] [--read-ratio 0.8] [--duration-ms 5000] [--warmup-ms 1000]
//     [--rounds 3] [--layouts 0,1,2]
//
// The load generator runs in this process and shares the machine's cores
// with the node: on 2 cores that caps what the threaded layouts can show.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import * as hdr from "hdr-histogram-js";
import { PiccoloClient } from "../src/client/client.js";
import { barChart, machine, median, progress, progressDone, table } from "./lib/report.js";

const { values: o } = parseArgs({
  options: {
    connections: { type: "string", default: "16" },
    pipeline: { type: "string", default: "16" },
    keys: { type: "string", default: "100000" },
    "value-bytes": { type: "string", default: "64" },
    "read-ratio": { type: "string", default: "0.8" },
    "duration-ms": { type: "string", default: "5000" },
    "warmup-ms": { type: "string", default: "1000" },
    rounds: { type: "string", default: "3" },
    layouts: { type: "string", default: "0,1,2" },
    out: { type: "string", default: "bench/results" },
  },
});
const opts = {
  connections: Number(o.connections),
  pipeline: Number(o.pipeline),
  keys: Number(o.keys),
  valueBytes: Number(o["value-bytes"]),
  readRatio: Number(o["read-ratio"]),
  durationMs: Number(o["duration-ms"]),
  warmupMs: Number(o["warmup-ms"]),
  rounds: Number(o.rounds),
  layouts: String(o.layouts).split(",").map(Number),
  out: String(o.out),
};
const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;

async function startNode(shards: number): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [
      CLI,
      "server",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--resp-port",
      "0",
      "--shards",
      String(shards),
      "--in-memory",
    ],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d;
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`node exited ${code}`)));
  });
  return { port, child };
}

const key = (i: number) => `key:${String(i).padStart(12, "0")}`;

interface RunResult {
  shards: number;
  round: number;
  opsPerSec: number;
  p50us: number;
  p99us: number;
  errors: number;
}

async function runOnce(shards: number, round: number, label: string): Promise<RunResult> {
  const { port, child } = await startNode(shards);
  const clients = await Promise.all(
    Array.from({ length: opts.connections }, () => PiccoloClient.connect({ port, timeoutMs: 30_000 })),
  );
  const value = Buffer.alloc(opts.valueBytes, 120);
  // Preload the key space so reads hit.
  for (let i = 0; i < opts.keys; i += 1000) {
    const batch: [string, Buffer][] = [];
    for (let j = i; j < Math.min(opts.keys, i + 1000); j++) batch.push([key(j), value]);
    await clients[j0(i)]!.mput(batch);
  }
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
  let ops = 0;
  let errors = 0;
  let recording = false;
  let stop = false;
  let seed = 12345 + round;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const one = async (c: PiccoloClient) => {
    const k = key(Math.floor(rand() * opts.keys));
    const t0 = process.hrtime.bigint();
    try {
      if (rand() < opts.readRatio) await c.get(k);
      else await c.put(k, value);
    } catch {
      errors++;
    }
    if (recording) {
      histogram.recordValue(Number(process.hrtime.bigint() - t0) / 1000);
      ops++;
    }
  };
  const lane = async (c: PiccoloClient) => {
    while (!stop) await one(c);
  };
  const lanes = clients.flatMap((c) => Array.from({ length: opts.pipeline }, () => lane(c)));
  await new Promise((r) => setTimeout(r, opts.warmupMs));
  recording = true;
  const t0 = Date.now();
  const ticker = setInterval(() => {
    const s = (Date.now() - t0) / 1000;
    const bar = "#".repeat(Math.round((s * 1000 * 20) / opts.durationMs)).padEnd(20, ".");
    progress(`${label} [${bar}] ${Math.round(ops / Math.max(s, 0.001) / 1000)}k ops/s`);
  }, 250);
  await new Promise((r) => setTimeout(r, opts.durationMs));
  const elapsed = (Date.now() - t0) / 1000;
  recording = false;
  stop = true;
  clearInterval(ticker);
  await Promise.all(lanes);
  await Promise.all(clients.map((c) => c.close()));
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  progress(`${label} done: ${Math.round(ops / elapsed)} ops/s`);
  progressDone();
  return {
    shards,
    round,
    opsPerSec: ops / elapsed,
    p50us: histogram.getValueAtPercentile(50),
    p99us: histogram.getValueAtPercentile(99),
    errors,
  };
}

function j0(i: number): number {
  return Math.floor(i / 1000) % opts.connections;
}

const runs: RunResult[] = [];
for (let round = 1; round <= opts.rounds; round++) {
  for (const shards of opts.layouts) {
    runs.push(await runOnce(shards, round, `round ${round}/${opts.rounds} shards=${shards}`));
  }
}

const summary = opts.layouts.map((shards) => {
  const mine = runs.filter((r) => r.shards === shards);
  return {
    shards,
    opsPerSec: median(mine.map((r) => r.opsPerSec)),
    p50us: median(mine.map((r) => r.p50us)),
    p99us: median(mine.map((r) => r.p99us)),
    errors: mine.reduce((n, r) => n + r.errors, 0),
  };
});
const base = summary.find((s) => s.shards === 0)?.opsPerSec ?? summary[0]!.opsPerSec;
console.log(
  `\nnative protocol: ${opts.connections} connections x ${opts.pipeline} in flight, ${opts.keys} keys, ` +
    `${opts.valueBytes}-byte values, ${Math.round(opts.readRatio * 100)}% reads, median of ${opts.rounds} rounds\n`,
);
console.log(
  table(
    ["layout", "ops/s", "p50", "p99", "vs --shards 0", "errors"],
    summary.map((s) => [
      `--shards ${s.shards}`,
      Math.round(s.opsPerSec),
      `${(s.p50us / 1000).toFixed(2)} ms`,
      `${(s.p99us / 1000).toFixed(2)} ms`,
      (s.opsPerSec / base).toFixed(2),
      s.errors,
    ]),
  ),
);
mkdirSync(opts.out, { recursive: true });
writeFileSync(
  `${opts.out}/native.json`,
  `${JSON.stringify({ machine: machine(), options: opts, runs, summary }, null, 2)}\n`,
);
writeFileSync(
  `${opts.out}/native.svg`,
  barChart(
    "Piccolo native protocol: ops/s by shard layout (median)",
    "ops/s",
    summary.map((s) => ({
      group: `--shards ${s.shards}`,
      series: "ops/s",
      value: s.opsPerSec,
      note: `p99 ${(s.p99us / 1000).toFixed(1)}ms`,
    })),
  ),
);
console.log(`\nwrote ${opts.out}/native.json and native.svg`);
