// npm run bench:memory: what a user sees. The memory of a whole process, as
// the operating system counts it, holding 1,000,000 keys of 16 bytes
// (key:%012d) with 64-byte values, loaded over the wire with
// `redis-cli --pipe`, for
//   redis-server without persistence (--save "" --appendonly no),
//   `piccolo server` as `npm start` starts it (durable: a temporary
//   --data-dir, every other flag at its default but the two free ports),
//   `piccolo server --in-memory`, and --in-memory with --shards 0, 1 and 2
//   (the layouts a default may choose between), and, as a reference that is
//   not how the node starts, --shards 0 under `node --max-semi-space-size=4`
//   (what capping V8's young generation would give; decision 0293).
// One process runs at a time. For each: VmRSS of the whole process (every
// thread; /proc/PID/status) before the first key, after the load (once the
// process has been idle for --settle-ms), and once idle for --idle-ms more
// (the node gives V8's young generation back when idle, decision 0299; the
// column says how many of its collections had run), its peak (VmHWM), bytes
// per key, and the ratios of Piccolo's RSS to Redis's used_memory_rss (INFO
// memory at the end, also kept with used_memory). Rounds (--rounds, default 2) alternate the
// order the targets start in; the figures are medians.
//
// A second table is the store's own accounting: one ShardStore in this
// process, its pages and index per key (store.memoryBytes()), beside Redis's
// used_memory per key: what each program counts for the data, without the
// runtime around it; with the time per insert (each timed on its own, since
// 2026-12-05, so the figure carries two clock reads) and the slowest insert
// (the index's rebuild used to stop a load at every doubling: decision 0053).
//
// Needs redis-server and redis-tools (it installs nothing). Writes
// bench/results/memory.json and memory.svg.
//
//   node --expose-gc dist/bench/memory.js [--rounds 2] [--keys N] [--settle-ms 3000] [--idle-ms 15000]
//     [--only name,name]
import { type ChildProcess, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ShardStore } from "../src/shard/store.js";
import { freePort } from "./lib/ports.js";
import { procs, sleep, waitLine } from "./lib/procs.js";
import { barChart, gitCommit, machine, median, progress, progressDone, table } from "./lib/report.js";
import { keyValue, pipeLoad, requireTools, respCommands, respInfo, waitPing, writeSetLoader } from "./lib/resp.js";

const { values: o } = parseArgs({
  options: {
    rounds: { type: "string", default: "2" },
    keys: { type: "string", default: "1000000" },
    "settle-ms": { type: "string", default: "3000" },
    "idle-ms": { type: "string", default: "15000" },
    only: { type: "string", default: "" },
    out: { type: "string", default: "bench/results" },
  },
});
const rounds = Number(o.rounds);
const N = Number(o.keys);
const settleMs = Number(o["settle-ms"]);
const idleMs = Number(o["idle-ms"]);
const VALUE_BYTES = 64;
const MB = 1024 * 1024;

requireTools("bench:memory", ["redis-server", "redis-cli"]);

const P = procs("bench:memory", "the servers");
const work = mkdtempSync(join(tmpdir(), "piccolo-membench-"));
P.onCleanup(() => rmSync(work, { recursive: true, force: true }));

interface Target {
  name: string;
  /** Starts the process; answers it, its RESP port once it answers PING, and (Piccolo) the shards it reported. */
  start(): Promise<{ child: ChildProcess; port: number; shards: number | null }>;
  redis: boolean;
}

const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;

/** `node [nodeArgs] dist/src/cli/main.js server` with free ports and `args`, as `npm start` runs it. */
function piccolo(name: string, args: string[], durable: boolean, nodeArgs: string[] = []): Target {
  return {
    name,
    redis: false,
    async start() {
      const port = await freePort();
      const respPort = await freePort();
      const dir = durable ? mkdtempSync(join(work, "data-")) : null;
      const child = P.child(
        name,
        process.execPath,
        [
          ...nodeArgs,
          CLI,
          "server",
          "--port",
          String(port),
          "--resp-port",
          String(respPort),
          ...(dir === null ? [] : ["--data-dir", dir]),
          ...args,
        ],
        [],
      );
      const m = await waitLine(child, /piccolo listening on \S+ \(shards: (\d+)/, name);
      await waitPing(respPort);
      return { child, port: respPort, shards: Number(m[1]) };
    },
  };
}

const redisTarget: Target = {
  name: "redis",
  redis: true,
  async start() {
    const port = await freePort();
    const child = P.child(
      "redis",
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      [],
    );
    child.stdout!.resume();
    await waitPing(port);
    return { child, port, shards: null };
  },
};

const allTargets: Target[] = [
  redisTarget,
  piccolo("piccolo (npm start: durable)", [], true),
  piccolo("piccolo --in-memory", ["--in-memory"], false),
  piccolo("piccolo --in-memory --shards 0", ["--in-memory", "--shards", "0"], false),
  piccolo("piccolo --in-memory --shards 1", ["--in-memory", "--shards", "1"], false),
  piccolo("piccolo --in-memory --shards 2", ["--in-memory", "--shards", "2"], false),
  // Not how the node starts: what capping V8's young generation would give (decision 0293).
  piccolo("node --max-semi-space-size=4, --in-memory --shards 0", ["--in-memory", "--shards", "0"], false, [
    "--max-semi-space-size=4",
  ]),
];
const only = o.only === "" ? [] : o.only.split(",");
const targets = allTargets.filter((t) => t.redis || only.length === 0 || only.some((x) => t.name.includes(x)));

/** VmRSS and VmHWM of a process, all its threads: what `ps` and `top` show as RES. */
function status(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(s)?.[1] ?? Number.NaN) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

interface Sample {
  target: string;
  round: number;
  /** The layout the node reported ("shards: N"), for Piccolo. */
  shards: number | null;
  baselineRss: number;
  afterRss: number;
  /** VmRSS once idle for --idle-ms more: after the node's idle trim (decision 0299). */
  idleRss: number;
  /** Piccolo: the idle trim's collections by then (INFO memory piccolo_idle_collections). */
  idleCollections?: number;
  peakRss: number;
  bytesPerKey: number;
  loadMs: number;
  usedMemory?: number;
  usedMemoryBaseline?: number;
  usedMemoryRss?: number;
}

async function measure(t: Target, round: number, loader: string): Promise<Sample> {
  const { child, port, shards } = await t.start();
  const pid = child.pid!;
  await sleep(settleMs); // start-up garbage collected, lazy work done: the idle process a user meets
  const before = status(pid);
  const usedBefore = t.redis ? Number((await respInfo(port, "memory")).used_memory) : undefined;
  const load = pipeLoad(port, loader);
  if (load.errors !== 0 || load.replies !== N)
    throw new Error(`${t.name}: redis-cli --pipe: ${load.replies} replies, ${load.errors} errors (want ${N}, 0)`);
  const [dbsize] = await respCommands(port, [["DBSIZE"]]);
  if (dbsize !== `:${N}`) throw new Error(`${t.name}: DBSIZE ${dbsize} after loading ${N} keys`);
  await sleep(settleMs);
  const after = status(pid);
  // Idle longer: the node gives back V8's young generation once idle (decision 0299); Redis waits as long.
  await sleep(idleMs);
  const idle = status(pid);
  const mem = await respInfo(port, "memory");
  await P.stop(child);
  return {
    target: t.name,
    round,
    shards,
    baselineRss: before.rss,
    afterRss: after.rss,
    idleRss: idle.rss,
    ...(t.redis ? {} : { idleCollections: Number(mem.piccolo_idle_collections ?? Number.NaN) }),
    peakRss: idle.hwm,
    bytesPerKey: (after.rss - before.rss) / N,
    loadMs: load.ms,
    ...(!t.redis
      ? {}
      : {
          usedMemory: Number(mem.used_memory),
          usedMemoryBaseline: usedBefore,
          usedMemoryRss: Number(mem.used_memory_rss),
        }),
  };
}

/** The store's own accounting: one ShardStore in this process, no runtime around it. */
function storeFigures() {
  const gc = (globalThis as { gc?: () => void }).gc;
  const store = new ShardStore();
  const t0 = performance.now();
  // The slowest insert, and which: an index rebuilt in one go used to stop the load at each doubling
  // (decision 0053); now none should stand out beyond the collector's and an allocation's few ms.
  let slowestMs = 0;
  let slowestAt = 0;
  for (let i = 0; i < N; i++) {
    const { key, value } = keyValue(i);
    const k = Buffer.from(key);
    const v = Buffer.from(value);
    const t = performance.now();
    store.set(k, v, i + 1, 0);
    const ms = performance.now() - t;
    if (ms > slowestMs) {
      slowestMs = ms;
      slowestAt = i;
    }
  }
  const loadMs = performance.now() - t0;
  gc?.();
  let found = 0;
  const t1 = performance.now();
  for (let i = 0; i < N; i++) if (store.find(Buffer.from(keyValue(i).key)) >= 0) found++;
  const findMs = performance.now() - t1;
  if (found !== N) throw new Error(`the store lost ${N - found} keys`);
  return {
    memoryBytes: store.memoryBytes(),
    bytesPerKey: store.memoryBytes() / N,
    loadNsPerKey: (loadMs * 1e6) / N,
    findNsPerKey: (findMs * 1e6) / N,
    slowestInsertMs: slowestMs,
    slowestInsertAt: slowestAt,
  };
}

const loader = await writeSetLoader(join(work, "load.resp"), N);
const samples: Sample[] = [];
try {
  const total = rounds * targets.length;
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? targets : [...targets].reverse();
    for (const t of order) {
      progress(`round ${round}/${rounds}: ${t.name} (${samples.length + 1}/${total})`);
      samples.push(await measure(t, round, loader));
    }
  }
  progressDone();
} finally {
  P.cleanup();
}
const store = storeFigures();

const mb = (b: number) => (b / MB).toFixed(1);
const med = (name: string, f: (s: Sample) => number) => median(samples.filter((s) => s.target === name).map(f));
const redisRss = med("redis", (s) => s.usedMemoryRss!);
const summary = targets.map((t) => ({
  target: t.name,
  shards: samples.find((s) => s.target === t.name)?.shards ?? null,
  baselineRss: med(t.name, (s) => s.baselineRss),
  afterRss: med(t.name, (s) => s.afterRss),
  idleRss: med(t.name, (s) => s.idleRss),
  idleCollections: t.redis ? null : med(t.name, (s) => s.idleCollections!),
  peakRss: med(t.name, (s) => s.peakRss),
  bytesPerKey: med(t.name, (s) => s.bytesPerKey),
  loadMs: med(t.name, (s) => s.loadMs),
  ratioToRedisRss: med(t.name, (s) => s.afterRss) / redisRss,
  idleRatioToRedisRss: med(t.name, (s) => s.idleRss) / redisRss,
}));

console.log(
  `\n${N.toLocaleString("en")} keys of 16 bytes with ${VALUE_BYTES}-byte values, loaded with redis-cli --pipe; ` +
    `RSS of the whole process (VmRSS), median of ${rounds} rounds\n`,
);
console.log(
  table(
    [
      "target",
      "RSS before (MiB)",
      `after, ${settleMs / 1000} s (MiB)`,
      `idle, +${idleMs / 1000} s (MiB)`,
      "peak (MiB)",
      "bytes/key",
      "load (s)",
      "after / Redis RSS",
      "idle / Redis RSS",
    ],
    summary.map((s) => [
      s.target,
      mb(s.baselineRss),
      mb(s.afterRss),
      mb(s.idleRss) + (s.idleCollections === null ? "" : ` (${s.idleCollections} trims)`),
      mb(s.peakRss),
      s.bytesPerKey.toFixed(1),
      (s.loadMs / 1000).toFixed(2),
      s.ratioToRedisRss.toFixed(2),
      s.idleRatioToRedisRss.toFixed(2),
    ]),
  ),
);
const redisUsed = med("redis", (s) => s.usedMemory!);
const redisUsedPerKey = med("redis", (s) => (s.usedMemory! - s.usedMemoryBaseline!) / N);
console.log(
  `\nredis INFO memory after the load: used_memory ${mb(redisUsed)} MiB (${redisUsedPerKey.toFixed(1)} B/key), ` +
    `used_memory_rss ${mb(redisRss)} MiB`,
);
console.log("\nThe data alone: each program's own accounting\n");
console.log(
  table(
    ["", "bytes/key", "total (MiB)"],
    [
      ["piccolo ShardStore (pages + index)", store.bytesPerKey.toFixed(1), mb(store.memoryBytes)],
      ["redis used_memory growth", redisUsedPerKey.toFixed(1), mb(redisUsedPerKey * N)],
    ],
  ),
);
console.log(
  `\nstore/redis: ${(store.bytesPerKey / redisUsedPerKey).toFixed(2)}; store load ${store.loadNsPerKey.toFixed(0)} ns/key, ` +
    `find ${store.findNsPerKey.toFixed(0)} ns/key (one thread, no IO); slowest insert ` +
    `${store.slowestInsertMs.toFixed(1)} ms (key ${store.slowestInsertAt.toLocaleString("en")})`,
);

const version = spawnSync("redis-server", ["--version"], { encoding: "utf8" }).stdout.match(/v=(\S+)/)?.[1] ?? "?";
mkdirSync(o.out, { recursive: true });
writeFileSync(
  `${o.out}/memory.json`,
  `${JSON.stringify(
    {
      machine: machine(),
      commit: gitCommit(),
      redis: version,
      keys: N,
      valueBytes: VALUE_BYTES,
      rounds,
      settleMs,
      idleMs,
      summary,
      redisUsedMemoryPerKey: redisUsedPerKey,
      store,
      samples,
    },
    null,
    2,
  )}\n`,
);
writeFileSync(
  `${o.out}/memory.svg`,
  barChart(
    `RSS of the whole process, ${N.toLocaleString("en")} keys (16 B keys, 64 B values)`,
    "MiB",
    summary.flatMap((s) => {
      const group = s.target
        .replace("node --max-semi-space-size=4, --in-memory --shards 0", "shards 0, semi 4")
        .replace("piccolo (npm start: durable)", "npm start")
        .replace("piccolo --in-memory --shards ", "shards ")
        .replace("piccolo --in-memory", "in-memory");
      return [
        { group, series: "before any key", value: s.baselineRss / MB },
        { group, series: "after the load", value: s.afterRss / MB },
        { group, series: "idle", value: s.idleRss / MB },
      ];
    }),
  ),
);
console.log(`\nwrote ${o.out}/memory.json and memory.svg`);
