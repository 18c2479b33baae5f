// npm run bench:cpu: what each request costs the server, in CPU time, beside
// Redis: the figure a profile-driven change moves, and one that a shared,
// noisy machine disturbs far less than throughput (a busy neighbour slows
// every request down, but the work each request needs stays the same).
//
// For each workload, a fresh server (Redis without persistence, and each
// Piccolo given with --piccolo) gets a warm-up run of redis-benchmark, then
// the measured run; the server's user and system CPU time (/proc/PID/stat,
// all its threads) over the measured run, divided by its requests, is the
// cost per request. Targets alternate order round by round; the table shows
// medians and the Piccolo/Redis ratio of the totals.
//
//   node dist/bench/cpu.js [--rounds 3] [--quick] [--native] [--only "MSET,GET P16"]
//     --only: the workloads whose names contain one of these (comma-separated), e.g. to measure one step;
//             "=NAME" for that workload alone ("=SET P1" is not SET P16 or MSET P16)
//     [--piccolo "label=DIR:args"]...   a built checkout DIR (its dist/ is used) and its server flags;
//                                       default: this checkout, in memory with the default layout
//
// --native: each Piccolo is also measured on its native port, with the native
// load generator (bench/lib/native-load.ts, run in this process: its CPU is
// not the server's) sending what bench/lib/workloads.ts sends for each test
// (SET as put, GET as get, MSET as a txn of 10 puts and as an mput; INCR has
// no native request). The native rows sit beside the same node's RESP rows,
// and their ratio is native/RESP (issue #19: the native port at least as fast).
//
// Linux only (/proc). Needs redis-server and redis-tools (it installs nothing).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { connect } from "node:net";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type NativeTest, nativeLoad } from "./lib/native-load.js";
import { freePort } from "./lib/ports.js";
import { barChart, gitCommit, machine, median, progress, progressDone, table } from "./lib/report.js";
import { requireTools, waitPing } from "./lib/resp.js";

const { values: o } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    quick: { type: "boolean", default: false },
    native: { type: "boolean", default: false },
    only: { type: "string", default: "" },
    piccolo: { type: "string", multiple: true, default: [] },
    out: { type: "string", default: "bench/results" },
  },
});
const rounds = Number(o.rounds);
const scale = o.quick ? 0.2 : 1;
requireTools("bench:cpu", ["redis-server", "redis-cli", "redis-benchmark"]);

/** This checkout's root (dist/bench/cpu.js is two levels below it). */
const here = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

interface Target {
  name: string;
  /** How it is loaded: redis-benchmark on a Redis port, or native-load on Piccolo's native port. */
  via: "resp" | "native";
  /** The server is the same as this target's, on its other port (native/RESP ratios). */
  twin?: string;
  start(port: number): ChildProcess;
}

const redis: Target = {
  name: "redis",
  via: "resp",
  start: (port) =>
    spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdio: "ignore",
    }),
};

function piccolo(spec: string): Target[] {
  const eq = spec.indexOf("=");
  const name = eq > 0 ? spec.slice(0, eq) : spec;
  const rest = eq > 0 ? spec.slice(eq + 1) : "";
  const colon = rest.indexOf(":");
  const root = resolve(colon >= 0 ? rest.slice(0, colon) : rest || here);
  const args = (colon >= 0 ? rest.slice(colon + 1) : "--in-memory").split(" ").filter((a) => a !== "");
  const cli = join(root, "dist/src/cli/main.js");
  const resp: Target = {
    name,
    via: "resp",
    start: (port) =>
      spawn(process.execPath, [cli, "server", "--port", "0", "--resp-port", String(port), ...args], {
        stdio: "ignore",
      }),
  };
  if (!o.native) return [resp];
  const native: Target = {
    name: `${name} native`,
    via: "native",
    twin: name,
    start: (port) =>
      spawn(process.execPath, [cli, "server", "--port", String(port), "--resp-port", "0", ...args], {
        stdio: "ignore",
      }),
  };
  return [resp, native];
}

const targets = [
  redis,
  ...(o.piccolo.length > 0 ? o.piccolo.flatMap(piccolo) : piccolo(`piccolo=${here}:--in-memory`)),
];

/** `native`: what native-load sends for it (bench/lib/workloads.ts); `test` null: a native request only. */
const allWorkloads: { name: string; test: string | null; native?: NativeTest; c: number; P: number; n: number }[] = [
  { name: "SET P16", test: "set", native: "put", c: 50, P: 16, n: 2_000_000 },
  { name: "GET P16", test: "get", native: "get", c: 50, P: 16, n: 2_000_000 },
  { name: "INCR P16", test: "incr", c: 50, P: 16, n: 2_000_000 },
  { name: "MSET P16", test: "mset", native: "txn", c: 50, P: 16, n: 400_000 },
  ...(o.native ? [{ name: "MSET P16 (mput)", test: null, native: "mput" as const, c: 50, P: 16, n: 400_000 }] : []),
  { name: "SET P1", test: "set", native: "put", c: 50, P: 1, n: 300_000 },
  { name: "GET P1", test: "get", native: "get", c: 50, P: 1, n: 300_000 },
];
const only = String(o.only)
  .split(",")
  .map((w) => w.trim())
  .filter((w) => w !== "");
// A name contains the entry ("P16": every pipelined workload), or, with a leading "=", is it ("=SET P1": not SET P16).
const picks = (name: string, x: string): boolean => (x.startsWith("=") ? name === x.slice(1) : name.includes(x));
const workloads = only.length === 0 ? allWorkloads : allWorkloads.filter((w) => only.some((x) => picks(w.name, x)));
if (workloads.length === 0)
  throw new Error(`--only ${o.only}: no workload is named so (${allWorkloads.map((w) => w.name).join(", ")})`);

/** User and system CPU seconds of a process so far, all threads (fields 14 and 15 of /proc/PID/stat). */
function cpuSeconds(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const tick = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;
  return { user: Number(f[11]) / tick, sys: Number(f[12]) / tick };
}

function benchmark(port: number, test: string, c: number, P: number, n: number): void {
  const r = spawnSync(
    "redis-benchmark",
    [
      ...["-h", "127.0.0.1", "-p", String(port), "-t", test, "-d", "64", "-r", "100000", "-n", String(n)],
      ...["-c", String(c), "-P", String(P), "-q"],
    ],
    { encoding: "utf8", timeout: 600_000 },
  );
  if (r.status !== 0) throw new Error(`redis-benchmark failed: ${r.stderr}`);
}

async function native(port: number, test: NativeTest, c: number, P: number, n: number): Promise<void> {
  const r = await nativeLoad({
    port,
    connections: c,
    pipeline: P,
    requests: n,
    keyspace: 100_000,
    valueBytes: 64,
    test,
  });
  if (r.errors > 0) throw new Error(`native-load: ${r.errors} error answers`);
}

/** Resolves once something accepts connections on `port` (a native port has no PING a shell tool sends). */
async function waitListening(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

interface Cell {
  target: string;
  workload: string;
  round: number;
  userUs: number;
  sysUs: number;
}

const cells: Cell[] = [];
const total =
  rounds * workloads.reduce((k, w) => k + targets.filter((t) => (t.via === "resp" ? w.test : w.native)).length, 0);
let done = 0;
for (let round = 1; round <= rounds; round++) {
  const order = round % 2 === 1 ? targets : [...targets].reverse();
  for (const w of workloads) {
    const n = Math.round(w.n * scale);
    for (const t of order) {
      const test = t.via === "resp" ? w.test : (w.native ?? null);
      if (test === null) continue;
      progress(`round ${round}/${rounds} ${w.name} ${t.name} (${++done}/${total})`);
      const port = await freePort();
      const child = t.start(port);
      // SET first, so GET and INCR find keys (as redis-benchmark's default order does); then a warm-up.
      const run = async (what: string, c: number, P: number, count: number) => {
        if (t.via === "resp") benchmark(port, what, c, P, count);
        else await native(port, what as NativeTest, c, P, count);
      };
      try {
        await (t.via === "resp" ? waitPing(port) : waitListening(port));
        if (w.test !== "set") await run(t.via === "resp" ? "set" : "put", 50, 16, Math.round(200_000 * scale));
        await run(test, w.c, w.P, Math.round(n / 5));
        const before = cpuSeconds(child.pid!);
        await run(test, w.c, w.P, n);
        const after = cpuSeconds(child.pid!);
        cells.push({
          target: t.name,
          workload: w.name,
          round,
          userUs: ((after.user - before.user) * 1e6) / n,
          sysUs: ((after.sys - before.sys) * 1e6) / n,
        });
      } finally {
        child.kill("SIGKILL");
      }
    }
  }
}
progressDone();

const rows: (string | number)[][] = [];
for (const w of workloads) {
  const of = (t: string) => cells.filter((c) => c.target === t && c.workload === w.name);
  const totalUs = (t: string) => median(of(t).map((c) => c.userUs + c.sysUs));
  const row: (string | number)[] = [w.name];
  for (const t of targets) {
    const cs = of(t.name);
    row.push(
      cs.length === 0
        ? "-"
        : `${median(cs.map((c) => c.userUs)).toFixed(2)} + ${median(cs.map((c) => c.sysUs)).toFixed(2)}`,
    );
    // Piccolo on its Redis port against Redis; on its native port against its own Redis port.
    const base = t.twin ?? "redis";
    if (t !== redis)
      row.push(cs.length === 0 || of(base).length === 0 ? "-" : (totalUs(t.name) / totalUs(base)).toFixed(2));
  }
  rows.push(row);
}
const header = ["workload"];
for (const t of targets)
  header.push(`${t.name} user+sys us`, ...(t === redis ? [] : [t.twin === undefined ? "x redis" : `x ${t.twin}`]));
console.log(
  `\nserver CPU per request (median of ${rounds} rounds; redis-benchmark -d 64 -r 100000; ratio of user+sys)\n`,
);
console.log(table(header, rows));

mkdirSync(String(o.out), { recursive: true });
const commit = gitCommit();
writeFileSync(
  `${o.out}/cpu.json`,
  `${JSON.stringify({ machine: machine(), commit, rounds, scale, targets: targets.map((t) => t.name), cells }, null, 2)}\n`,
);
writeFileSync(
  `${o.out}/cpu.svg`,
  barChart(
    "Server CPU per request (us, user+sys, lower is better)",
    "us",
    workloads.flatMap((w) =>
      targets.flatMap((t) => {
        const cs = cells.filter((c) => c.target === t.name && c.workload === w.name);
        if (cs.length === 0) return [];
        return [{ group: w.name, series: t.name, value: Number(median(cs.map((c) => c.userUs + c.sysUs)).toFixed(2)) }];
      }),
    ),
  ),
);
console.log(`\nwrote ${o.out}/cpu.json and cpu.svg (commit ${commit})`);
