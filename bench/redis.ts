// npm run bench:redis: issue #19's table, Piccolo against Redis on Redis's
// own benchmark, side by side in one run.
//
// Needs redis-server, redis-cli and redis-benchmark (it installs nothing: it
// says what is missing and exits 2). Starts, on free loopback ports:
//
//   pair "in memory"  redis-server --save "" --appendonly no
//                     piccolo server --in-memory          (the default layout)
//   pair "durable"    redis-server --appendonly yes --appendfsync <P> --save "" (a fresh temp --dir)
//                     piccolo server --data-dir <fresh temp dir>   (as `npm start` starts it:
//                     nothing but its ports and where its data goes; P is its default --fsync,
//                     read from src/node/config.ts, so both make the same promise)
//   layouts           piccolo server --in-memory --shards N, for N in --layouts (default 0,1,2;
//                     "" for none), each against the Redis without persistence
//
// Each round runs, for each workload of bench/lib/workloads.ts (-d 64 -r 100000),
//   redis-benchmark -t <tests> -c <c> -P <P> -n <n> --csv
// against every server, the order of the servers reversed every round (A B C ..., ... C B A), so Redis
// and Piccolo of a pair run back to back and take turns going first. After the Redis-protocol run of
// each pair's Piccolo, the same workload goes through the native protocol (SET as put, GET as get, MSET
// as a txn of 10 puts and as an mput; INCR has no native request: bench/lib/workloads.ts) with
// bench/lib/native-load.ts, a load generator in worker threads that is not the bottleneck (it reports
// its own CPU use); --skip-native leaves that out.
//
// Reports per cell the median ops/s of the rounds, the Piccolo/Redis ratio (of the medians, and within
// each round), p50/p99 from redis-benchmark, for -c 1 the p50 ratio (Piccolo/Redis: that is the goal
// there), and whether the goal is met; the native figures beside the Redis-protocol ones of the same
// node. Writes bench/results/redis.json, redis.svg (the pairs and the native figures) and
// redis-layouts.svg.
//
//   node dist/bench/redis.js [--rounds 3] [--quick] [--layouts 0,1,2] [--skip-native]
//     [--native-threads N (default: one per two cores)] [--dir /tmp]
//
// --quick: a tenth of the requests and 2 rounds, a smoke run of under a minute.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { SERVER_FLAGS } from "../src/node/config.js";
import { type NativeLoadResult, nativeLoad } from "./lib/native-load.js";
import { procs } from "./lib/procs.js";
import { barChart, gitCommit, machine, median, progress, progressDone, table } from "./lib/report.js";
import {
  type Appendfsync,
  type RespServer,
  redisBenchmarkRun,
  requireTools,
  startPiccoloResp,
  startRedis,
} from "./lib/resp.js";
import { goalText, KEYSPACE, meets, nativeTests, VALUE_BYTES, WORKLOADS, type Workload } from "./lib/workloads.js";

const BENCH = "bench:redis";
const { values: o } = parseArgs({
  options: {
    rounds: { type: "string" },
    quick: { type: "boolean", default: false },
    layouts: { type: "string", default: "0,1,2" },
    "skip-native": { type: "boolean", default: false },
    "native-threads": { type: "string" },
    dir: { type: "string", default: tmpdir() },
    out: { type: "string", default: "bench/results" },
  },
});
const rounds = Number(o.rounds ?? (o.quick ? 2 : 3));
const scale = o.quick ? 0.1 : 1;
const layouts = String(o.layouts)
  .split(",")
  .filter((s) => s.trim() !== "")
  .map(Number);
const withNative = !o["skip-native"];
const nativeThreads = o["native-threads"] === undefined ? undefined : Number(o["native-threads"]);
const commandLine = `node dist/bench/redis.js ${process.argv.slice(2).join(" ")}`.trim();

requireTools(BENCH, ["redis-server", "redis-cli", "redis-benchmark"]);
const P = procs(BENCH, "the servers");
const base = mkdtempSync(join(String(o.dir), "piccolo-bench-redis-"));
P.onCleanup(() => rmSync(base, { recursive: true, force: true }));
// What `npm start` runs with: the node's default --fsync, which Redis's appendfsync matches.
const fsync = SERVER_FLAGS.fsync.default as Appendfsync;

type Pair = "in memory" | "durable" | "layout";
interface Target {
  s: RespServer;
  kind: "redis" | "piccolo";
  pair: Pair;
  /** The Redis a Piccolo target is measured against. */
  against?: Target;
  /** Whether the native protocol runs beside its Redis-protocol runs. */
  native: boolean;
}

progress("starting the servers");
const redisMem: Target = {
  s: await startRedis({ name: "redis", procs: P }),
  kind: "redis",
  pair: "in memory",
  native: false,
};
const piccoloMem: Target = {
  s: await startPiccoloResp("piccolo --in-memory", ["--in-memory"], { procs: P }),
  kind: "piccolo",
  pair: "in memory",
  against: redisMem,
  native: withNative,
};
mkdirSync(join(base, "redis"));
const redisAof: Target = {
  s: await startRedis({ name: `redis aof ${fsync}`, procs: P, dir: join(base, "redis"), appendfsync: fsync }),
  kind: "redis",
  pair: "durable",
  native: false,
};
const piccoloDurable: Target = {
  s: await startPiccoloResp("piccolo (npm start)", ["--data-dir", join(base, "piccolo")], { procs: P }),
  kind: "piccolo",
  pair: "durable",
  against: redisAof,
  native: withNative,
};
const targets: Target[] = [redisMem, piccoloMem, redisAof, piccoloDurable];
for (const n of layouts)
  targets.push({
    s: await startPiccoloResp(`piccolo --in-memory --shards ${n}`, ["--in-memory", "--shards", String(n)], {
      procs: P,
    }),
    kind: "piccolo",
    pair: "layout",
    against: redisMem,
    native: false,
  });
progressDone();

interface Cell {
  target: string;
  via: "resp" | "native";
  workload: string;
  test: string;
  round: number;
  /** Place in the round's order (0: first). */
  position: number;
  rps: number;
  p50ms: number;
  p99ms: number;
  /**
   * The load generator's own use over the run: CPU per request (user + system), cores kept busy, and for
   * the native one its threads' event-loop utilisation and the error answers it counted. For
   * redis-benchmark, the figures of its whole invocation (MSET apart, every test of the workload).
   */
  generator: {
    cpuUsPerRequest: number | null;
    cpuCores: number | null;
    threads?: number;
    elu?: number[];
    errors?: number;
  };
}

const requestsOf = (w: Workload, test: string) =>
  Math.max(1, Math.round((w.requestsFor?.[test] ?? w.requests) * scale));

function respRun(t: Target, w: Workload, round: number, position: number): Cell[] {
  // One redis-benchmark per request count (MSET's is smaller).
  const groups = new Map<number, string[]>();
  for (const test of w.tests) groups.set(requestsOf(w, test), [...(groups.get(requestsOf(w, test)) ?? []), test]);
  const cells: Cell[] = [];
  for (const [n, tests] of groups) {
    const run = redisBenchmarkRun(t.s, [
      "-t",
      tests.join(",").toLowerCase(),
      "-d",
      String(VALUE_BYTES),
      "-r",
      String(KEYSPACE),
      "-n",
      String(n),
      "-c",
      String(w.connections),
      "-P",
      String(w.pipeline),
    ]);
    if (run.lines.length !== tests.length)
      console.error(`\n${t.s.name} ${w.name}: ${run.lines.length} results for ${tests}`);
    const generator = {
      cpuUsPerRequest: run.cpuMs === null ? null : (run.cpuMs * 1000) / (n * tests.length),
      cpuCores: run.cpuMs === null ? null : run.cpuMs / run.wallMs,
    };
    for (const l of run.lines)
      cells.push({
        target: t.s.name,
        via: "resp",
        workload: w.name,
        test: l.test,
        round,
        position,
        ...pick(l),
        generator,
      });
  }
  return cells;
}

const pick = (l: { rps: number; p50ms: number; p99ms: number }) => ({ rps: l.rps, p50ms: l.p50ms, p99ms: l.p99ms });

async function nativeRun(t: Target, w: Workload, round: number, position: number): Promise<Cell[]> {
  const cells: Cell[] = [];
  for (const { test: redisTest, label: test, op } of nativeTests(w)) {
    const r: NativeLoadResult = await nativeLoad({
      port: t.s.nativePort!,
      connections: w.connections,
      pipeline: w.pipeline,
      requests: requestsOf(w, redisTest),
      keyspace: KEYSPACE,
      valueBytes: VALUE_BYTES,
      test: op,
      seed: round * 1000 + position,
      ...(nativeThreads === undefined ? {} : { threads: nativeThreads }),
    });
    if (r.errors > 0) console.error(`\n${t.s.name} native ${w.name} ${test}: ${r.errors} error answers`);
    cells.push({
      target: t.s.name,
      via: "native",
      workload: w.name,
      test,
      round,
      position,
      ...pick(r),
      generator: {
        cpuUsPerRequest: (r.cpuCores * r.elapsedMs * 1000) / r.requests,
        cpuCores: r.cpuCores,
        threads: r.threads,
        elu: r.elu,
        errors: r.errors,
      },
    });
  }
  return cells;
}

const cells: Cell[] = [];
const t0 = performance.now();
{
  const total = rounds * WORKLOADS.length * targets.length;
  let done = 0;
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? targets : [...targets].reverse();
    for (const w of WORKLOADS)
      for (const [position, t] of order.entries()) {
        const eta =
          done === 0 ? "" : `, ~${Math.round((((performance.now() - t0) / done) * (total - done)) / 1000)} s left`;
        progress(`round ${round}/${rounds} ${w.name} ${t.s.name} (${++done}/${total}${eta})`);
        cells.push(...respRun(t, w, round, position));
        if (t.native) cells.push(...(await nativeRun(t, w, round, position)));
      }
  }
  progressDone();
}
const seconds = (performance.now() - t0) / 1000;
P.cleanup();

// ------------------------------------------------------------------- report

const of = (target: string, via: Cell["via"], w: string, test: string) =>
  cells.filter((c) => c.target === target && c.via === via && c.workload === w && c.test === test);
const med = (cs: Cell[], f: (c: Cell) => number) => (cs.length === 0 ? Number.NaN : median(cs.map(f)));
const fmt = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : "-");
const ms = (x: number) => fmt(x, 3);

interface Row {
  pair: Pair;
  piccolo: string;
  redis: string;
  workload: string;
  test: string;
  goal: string;
  redisRps: number;
  piccoloRps: number;
  /** Piccolo/Redis, ops/s (of the medians). */
  ratio: number;
  ratioByRound: number[];
  redisP50ms: number;
  redisP99ms: number;
  piccoloP50ms: number;
  piccoloP99ms: number;
  /** Piccolo p50 / Redis p50 (of the medians). */
  p50Ratio: number;
  p50RatioByRound: number[];
  met: boolean;
}

const rows: Row[] = [];
for (const t of targets) {
  if (t.kind !== "piccolo") continue;
  const redis = t.against!;
  for (const w of WORKLOADS)
    for (const test of w.tests) {
      const r = of(redis.s.name, "resp", w.name, test);
      const p = of(t.s.name, "resp", w.name, test);
      const byRound = (f: (c: Cell) => number) =>
        p.flatMap((pc) => {
          const rc = r.find((c) => c.round === pc.round);
          return rc ? [f(pc) / f(rc)] : [];
        });
      const row: Row = {
        pair: t.pair,
        piccolo: t.s.name,
        redis: redis.s.name,
        workload: w.name,
        test,
        goal: goalText(w.goal),
        redisRps: med(r, (c) => c.rps),
        piccoloRps: med(p, (c) => c.rps),
        ratio: med(p, (c) => c.rps) / med(r, (c) => c.rps),
        ratioByRound: byRound((c) => c.rps),
        redisP50ms: med(r, (c) => c.p50ms),
        redisP99ms: med(r, (c) => c.p99ms),
        piccoloP50ms: med(p, (c) => c.p50ms),
        piccoloP99ms: med(p, (c) => c.p99ms),
        p50Ratio: med(p, (c) => c.p50ms) / med(r, (c) => c.p50ms),
        p50RatioByRound: byRound((c) => c.p50ms),
        met: false,
      };
      row.met = meets(w.goal, w.goal.kind === "ops" ? row.ratio : row.p50Ratio);
      rows.push(row);
    }
}

interface NativeRow {
  piccolo: string;
  workload: string;
  test: string;
  nativeRps: number;
  respRps: number;
  /** Native/RESP ops/s of the same node (the goal: >= 1). */
  ratio: number;
  ratioByRound: number[];
  /** Native ops/s / the pair's Redis ops/s. */
  vsRedis: number;
  nativeP50ms: number;
  nativeP99ms: number;
  respP50ms: number;
  /**
   * The generators' use (medians): CPU per request and cores kept busy, native-load's and redis-benchmark's
   * on the same node and workload; the busiest native thread's event-loop utilisation.
   */
  generatorUs: number;
  generatorCores: number;
  redisBenchmarkUs: number;
  redisBenchmarkCores: number;
  generatorEluMax: number;
  errors: number;
  met: boolean;
}
const nativeRows: NativeRow[] = [];
for (const t of targets) {
  if (!t.native) continue;
  for (const w of WORKLOADS)
    for (const { test: redisTest, label: test } of nativeTests(w)) {
      const n = of(t.s.name, "native", w.name, test);
      if (n.length === 0) continue;
      const r = of(t.s.name, "resp", w.name, redisTest);
      const ratio = med(n, (c) => c.rps) / med(r, (c) => c.rps);
      nativeRows.push({
        piccolo: t.s.name,
        workload: w.name,
        test,
        nativeRps: med(n, (c) => c.rps),
        respRps: med(r, (c) => c.rps),
        ratio,
        ratioByRound: n.flatMap((nc) => {
          const rc = r.find((c) => c.round === nc.round);
          return rc ? [nc.rps / rc.rps] : [];
        }),
        vsRedis: med(n, (c) => c.rps) / med(of(t.against!.s.name, "resp", w.name, redisTest), (c) => c.rps),
        nativeP50ms: med(n, (c) => c.p50ms),
        nativeP99ms: med(n, (c) => c.p99ms),
        respP50ms: med(r, (c) => c.p50ms),
        generatorUs: med(n, (c) => c.generator.cpuUsPerRequest ?? Number.NaN),
        generatorCores: med(n, (c) => c.generator.cpuCores ?? Number.NaN),
        redisBenchmarkUs: med(r, (c) => c.generator.cpuUsPerRequest ?? Number.NaN),
        redisBenchmarkCores: med(r, (c) => c.generator.cpuCores ?? Number.NaN),
        generatorEluMax: Math.max(...n.flatMap((c) => c.generator.elu ?? [])),
        errors: n.reduce((s, c) => s + (c.generator.errors ?? 0), 0),
        met: ratio >= 1,
      });
    }
}

const commit = gitCommit();
const redisVersion = /v=(\S+)/.exec(spawnSync("redis-server", ["--version"], { encoding: "utf8" }).stdout)?.[1] ?? "?";
console.log(
  `\n${BENCH}: redis-benchmark -d ${VALUE_BYTES} -r ${KEYSPACE}, median of ${rounds} rounds, the order reversed each ` +
    `round; Redis ${redisVersion}; commit ${commit}; ${Math.round(seconds)} s\n`,
);
for (const t of targets)
  console.log(
    `  ${t.s.name}${t.s.shards === undefined ? "" : ` (shards: ${t.s.shards})`}: ${t.s.command.slice(1).join(" ")}`,
  );
console.log(
  `\n${table(
    [
      "pair",
      "workload",
      "test",
      "redis",
      "piccolo",
      "ratio",
      "by round",
      "redis p50/p99",
      "piccolo p50/p99",
      "p50 ratio",
      "goal",
      "met",
    ],
    rows.map((r) => [
      r.pair === "layout" ? r.piccolo.replace("piccolo ", "") : r.pair,
      r.workload,
      r.test,
      Math.round(r.redisRps),
      Math.round(r.piccoloRps),
      fmt(r.ratio),
      r.ratioByRound.map((x) => fmt(x)).join(" "),
      `${ms(r.redisP50ms)}/${ms(r.redisP99ms)}`,
      `${ms(r.piccoloP50ms)}/${ms(r.piccoloP99ms)}`,
      fmt(r.p50Ratio),
      r.goal,
      r.met ? "met" : "NOT met",
    ]),
  )}`,
);
if (nativeRows.length > 0)
  console.log(
    `\nnative protocol (bench/lib/native-load.ts, same -c/-P/-n/-r/-d) beside the Redis-protocol figures of the same node\n\n${table(
      [
        "node",
        "workload",
        "test",
        "native",
        "resp",
        "native/resp",
        "by round",
        "native/redis",
        "native p50/p99",
        "resp p50",
        "CPU us/req (cores): native-load",
        "redis-benchmark",
        "max ELU",
        "goal >= resp",
      ],
      nativeRows.map((r) => [
        r.piccolo,
        r.workload,
        r.test,
        Math.round(r.nativeRps),
        Math.round(r.respRps),
        fmt(r.ratio),
        r.ratioByRound.map((x) => fmt(x)).join(" "),
        fmt(r.vsRedis),
        `${ms(r.nativeP50ms)}/${ms(r.nativeP99ms)}`,
        ms(r.respP50ms),
        `${fmt(r.generatorUs, 1)} (${fmt(r.generatorCores)})`,
        `${fmt(r.redisBenchmarkUs, 1)} (${fmt(r.redisBenchmarkCores)})`,
        fmt(r.generatorEluMax),
        r.met ? "met" : "NOT met",
      ]),
    )}`,
  );

mkdirSync(String(o.out), { recursive: true });
writeFileSync(
  `${o.out}/redis.json`,
  `${JSON.stringify(
    {
      machine: machine(),
      commit,
      command: commandLine,
      redis: redisVersion,
      seconds,
      rounds,
      scale,
      fsync,
      workloads: WORKLOADS.map((w) => ({ ...w, requests: Math.round(w.requests * scale) })),
      targets: targets.map((t) => ({
        name: t.s.name,
        kind: t.kind,
        pair: t.pair,
        against: t.against?.s.name,
        shards: t.s.shards,
        command: t.s.command.slice(1),
      })),
      rows,
      native: nativeRows,
      cells,
    },
    null,
    2,
  )}\n`,
);
// Two charts, each within the chart's five colours: the pairs with the native figures, and the layouts.
const bar = (r: Row, series: string) => ({ group: `${r.test} ${r.workload}`, series, value: r.ratio * 100 });
const title = (what: string) =>
  `${what}: Piccolo's ops/s as % of Redis's, median of ${rounds} rounds (goal at c50: >= 100; at c1 the goal is on p50)`;
writeFileSync(
  `${o.out}/redis.svg`,
  barChart(title("Pairs"), "% of Redis's ops/s", [
    ...rows.filter((r) => r.pair !== "layout").map((r) => bar(r, `RESP, ${r.pair}`)),
    ...nativeRows.map((r) => ({
      group: `${r.test} ${r.workload}`,
      series: `native, ${r.piccolo === piccoloMem.s.name ? "in memory" : "durable"}`,
      value: r.vsRedis * 100,
    })),
  ]),
);
if (layouts.length > 0)
  writeFileSync(
    `${o.out}/redis-layouts.svg`,
    barChart(
      title("Layouts, in memory"),
      "% of Redis's ops/s",
      rows
        .filter((r) => r.pair !== "durable")
        .map((r) => bar(r, r.pair === "layout" ? r.piccolo.replace("piccolo --in-memory ", "") : "default")),
    ),
  );
console.log(`\nwrote ${o.out}/redis.json, redis.svg${layouts.length > 0 ? " and redis-layouts.svg" : ""}`);
