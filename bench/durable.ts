// npm run bench:durable: a durable Piccolo node against Redis with its AOF,
// side by side in one run, policy by policy (issue #15).
//
// Needs redis-server, redis-cli and redis-benchmark (it installs nothing: it
// says what is missing and exits 2). Two parts:
//
// 1. Throughput. Starts four targets on free loopback ports, each with a
//    fresh temporary data directory:
//      redis-server --appendonly yes --appendfsync always|everysec --save ""
//      piccolo server --fsync always|everysec (default shards)
//    and for --rounds rounds (default 3) runs, against each,
//      redis-benchmark -t set,get -d 64 -r 100000 -c 50 -P 1 / -P 16
//    the order of the four reversed every round (A B C D, D C B A, ...), so
//    Redis and Piccolo of one policy alternate who goes first. Reports the
//    median ops/s, the Piccolo/Redis ratio per policy, p50/p99/p99.9 and
//    how many requests waited over 10 ms (from redis-benchmark's full report).
//
// 2. Recovery. Per round and per contender (both at fsync everysec, the
//    default of both; the order alternates by round): a fresh data
//    directory (its start timed too: "empty start", the fixed cost), 1M keys (key:%012d, 16 bytes; 64-byte values; the same bytes
//    for both) loaded with `redis-cli --pipe`, then
//      kill -9, restart              ("kill -9")
//      clean stop, restart           ("clean stop": Redis SHUTDOWN, Piccolo SIGTERM)
//      compact, clean stop, restart  ("compacted": Redis BGREWRITEAOF, Piccolo SAVE)
//    each timed from spawn until the server answers PING with PONG and
//    DBSIZE with the number of keys loaded (polled every 5 ms on one
//    connection), beside what the server says itself (Piccolo's "recovered N
//    keys in T ms", Redis's "DB loaded from append only file: T seconds"),
//    and the data directory's size before each restart. A server that comes
//    back with fewer keys than it acknowledged (Redis at everysec can, after
//    kill -9: it delays its write() while a slow fsync runs) is counted
//    ready at its first answer and its loss reported ("lost keys").
//
// Writes bench/results/durable.json, durable.svg (throughput) and
// durable-recovery.svg, prints the tables.
//
//   node dist/bench/durable.js [--rounds 3] [--quick] [--keys N] [--dir /path]
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { freePort } from "./lib/ports.js";
import {
  parseBenchmarkReport,
  pipeLoad,
  redisServerArgs,
  requireTools,
  respCommands,
  respInfo,
  writeSetLoader,
} from "./lib/resp.js";
import { barChart, machine, median, progress, progressDone, table } from "./lib/report.js";

const { values: o } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    quick: { type: "boolean", default: false },
    keys: { type: "string" },
    dir: { type: "string", default: tmpdir() },
    out: { type: "string", default: "bench/results" },
    "skip-throughput": { type: "boolean", default: false },
    "skip-recovery": { type: "boolean", default: false },
  },
});
const rounds = Number(o.rounds);
const scale = o.quick ? 0.1 : 1;
const recoveryKeys = o.keys !== undefined ? Number(o.keys) : o.quick ? 100_000 : 1_000_000;

requireTools("bench:durable", ["redis-server", "redis-cli", "redis-benchmark"]);

const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;
const base = mkdtempSync(join(String(o.dir), "piccolo-bench-durable-"));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// On a failure keep the servers' logs (they sit beside the data directories) and nothing else.
process.on("exit", (code) => {
  if (code === 0) return;
  for (const e of readdirSync(base)) if (!e.endsWith(".log")) rmSync(join(base, e), { recursive: true, force: true });
  console.error(`bench:durable failed; the servers' logs are in ${base}`);
});

type Policy = "always" | "everysec";
type Kind = "redis" | "piccolo";

interface Server {
  kind: Kind;
  policy: Policy;
  name: string;
  port: number;
  dir: string;
  log: string;
  child: ChildProcess;
  spawnedAt: number;
}

/** Starts a server on `port` (a free one when 0) over `dir`, its stdout and stderr going to a log file of its own. */
async function start(kind: Kind, policy: Policy, dir: string, port = 0, tag = "start"): Promise<Server> {
  const p = port || (await freePort());
  mkdirSync(dir, { recursive: true });
  const log = join(dir, `..`, `${kind}-${policy}-${p}-${tag}.log`);
  const fd = openSync(log, "w");
  const args =
    kind === "redis"
      ? redisServerArgs({ port: p, dir, appendfsync: policy })
      : [
          CLI,
          "server",
          "--host",
          "127.0.0.1",
          "--port",
          "0",
          "--resp-port",
          String(p),
          "--data-dir",
          dir,
          "--fsync",
          policy,
        ];
  const spawnedAt = performance.now();
  const child = spawn(kind === "redis" ? "redis-server" : process.execPath, args, { stdio: ["ignore", fd, fd] });
  closeSync(fd);
  return { kind, policy, name: `${kind} ${policy}`, port: p, dir, log, child, spawnedAt };
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once("exit", () => r()));
}

/**
 * From the server's spawn until it answers PING with PONG and DBSIZE with
 * `keys` (connection refused and -LOADING are retried every 5 ms). Returns
 * milliseconds since the spawn and the keys it holds; gives up `limitMs`
 * after the call. With `settleMs`, a server that answers PONG with another
 * DBSIZE (it lost keys) is taken as ready at its first answer once the count
 * has not reached `keys` for that long: Redis at everysec can lose
 * acknowledged writes to kill -9 (it delays its write() while a slow fsync
 * runs), and the loss is a result, not a failure.
 */
async function waitReady(
  s: Server,
  keys: number,
  limitMs = 600_000,
  settleMs = 0,
): Promise<{ ms: number; keys: number }> {
  const deadline = performance.now() + limitMs;
  let last = "";
  let first: { ms: number; keys: number } | null = null;
  for (;;) {
    if (s.child.exitCode !== null || s.child.signalCode !== null)
      throw new Error(`${s.name} exited (${s.child.exitCode ?? s.child.signalCode}); see ${s.log}`);
    try {
      const [ping, size] = await respCommands(
        s.port,
        [["PING"], ["DBSIZE"]],
        Math.max(1, deadline - performance.now()),
      );
      const now = performance.now();
      if (ping === "+PONG" && size === `:${keys}`) return { ms: now - s.spawnedAt, keys };
      if (ping === "+PONG" && /^:\d+$/.test(size ?? "") && settleMs > 0) {
        first ??= { ms: now - s.spawnedAt, keys: Number(size!.slice(1)) };
        if (now - s.spawnedAt - first.ms >= settleMs) return { ms: first.ms, keys: Number(size!.slice(1)) };
      }
      last = `${ping} ${size}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (performance.now() >= deadline)
      throw new Error(`${s.name} on ${s.port} not ready with ${keys} keys after ${limitMs} ms (last: ${last})`);
    await sleep(5);
  }
}

const info = (port: number) => respInfo(port, "persistence");

/** Until no AOF rewrite or snapshot is running (or scheduled). */
async function quiesce(s: Server): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    const f = await info(s.port);
    if (f.aof_rewrite_in_progress !== "1" && f.aof_rewrite_scheduled !== "1" && f.rdb_bgsave_in_progress !== "1")
      return;
    await sleep(20);
  }
  throw new Error(`${s.name}: a rewrite/snapshot still runs after 120 s`);
}

/** Clean stop: Redis SHUTDOWN (AOF written and fsynced), Piccolo SIGTERM. Returns ms to exit. */
async function stopClean(s: Server): Promise<number> {
  const t0 = performance.now();
  if (s.kind === "redis") {
    await respCommands(s.port, [["SHUTDOWN"]]).catch(() => undefined); // the connection closes instead of a reply
  } else s.child.kill("SIGTERM");
  await exited(s.child);
  return performance.now() - t0;
}

async function kill9(s: Server): Promise<void> {
  s.child.kill("SIGKILL");
  await exited(s.child);
}

/** Apparent bytes of every file under `dir`. */
function dirBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += dirBytes(p);
    else if (e.isFile()) total += statSync(p).size;
  }
  return total;
}

/** What the server said about its own recovery: Piccolo's "recovered N keys in T ms", Redis's "DB loaded from append only file: T seconds". */
function selfReportedMs(s: Server): number | null {
  const text = readFileSync(s.log, "utf8");
  if (s.kind === "piccolo") {
    const m = /recovered (\d+) keys in (\d+) ms/.exec(text);
    return m ? Number(m[2]) : null;
  }
  const m = /DB loaded from append only file: ([\d.]+) seconds/.exec(text);
  return m ? Number(m[1]) * 1000 : null;
}

// ---------------------------------------------------------------- throughput

const configs = [
  { name: "c50 P1", args: ["-c", "50", "-P", "1"], n: 100_000 },
  { name: "c50 P16", args: ["-c", "50", "-P", "16"], n: 400_000 },
];
const policies: Policy[] = ["always", "everysec"];
const tests = ["SET", "GET"];

interface Cell {
  target: string;
  kind: Kind;
  policy: Policy;
  config: string;
  test: string;
  round: number;
  position: number;
  rps: number;
  p50ms: number;
  p99ms: number;
  p999ms: number;
  /** Requests that waited over 10 ms (redis-benchmark's cumulative distribution). */
  over10ms: number;
  requests: number;
}

function runBenchmark(s: Server, config: (typeof configs)[number], round: number, position: number): Cell[] {
  const n = Math.round(config.n * scale);
  const args = ["-h", "127.0.0.1", "-p", String(s.port), "-t", "set,get", "-d", "64", "-r", "100000"];
  // The full report, not --csv: the tail (p99.9, requests over 10 ms) is only in its distributions.
  const r = spawnSync("redis-benchmark", [...args, "-n", String(n), ...config.args], {
    encoding: "utf8",
    timeout: 900_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  const cells: Cell[] = parseBenchmarkReport(r.stdout ?? "").map((t) => ({
    target: s.name,
    kind: s.kind,
    policy: s.policy,
    config: config.name,
    test: t.test,
    round,
    position,
    rps: t.rps,
    p50ms: t.p50ms,
    p99ms: t.p99ms,
    p999ms: t.p999ms,
    over10ms: t.over10ms,
    requests: t.requests,
  }));
  if (cells.length !== tests.length)
    console.error(`\n${s.name} ${config.name} round ${round}: ${cells.length} results (${r.stderr?.slice(0, 300)})`);
  return cells;
}

const commandLine = `node dist/bench/durable.js ${process.argv.slice(2).join(" ")}`.trim();
const cells: Cell[] = [];
const throughputDirs: Record<string, number> = {};
const throughputInfo: Record<string, Record<string, string>> = {};
let throughputSeconds = 0;
if (!o["skip-throughput"]) {
  const t0 = performance.now();
  const servers: Server[] = [];
  try {
    for (const policy of policies)
      for (const kind of ["redis", "piccolo"] as Kind[]) {
        const s = await start(kind, policy, join(base, `tp-${kind}-${policy}`, "data"));
        servers.push(s);
        await waitReady(s, 0, 60_000);
      }
    const total = rounds * configs.length * servers.length;
    let done = 0;
    for (let round = 1; round <= rounds; round++) {
      const order = round % 2 === 1 ? servers : [...servers].reverse();
      for (const config of configs)
        order.forEach((s, position) => {
          progress(`throughput round ${round}/${rounds} ${config.name} ${s.name} (${++done}/${total})`);
          cells.push(...runBenchmark(s, config, round, position));
        });
    }
    progressDone();
    for (const s of servers) {
      throughputDirs[s.name] = dirBytes(s.dir);
      throughputInfo[s.name] = await info(s.port); // Piccolo's fsync count and times; Redis's AOF sizes
    }
  } finally {
    for (const s of servers) {
      s.child.kill("SIGTERM");
      await exited(s.child);
    }
  }
  throughputSeconds = (performance.now() - t0) / 1000;
}

// ------------------------------------------------------------------ recovery

/** redis-cli --pipe of the loader file into a server; throws when redis-cli says nothing countable. */
function load(s: Server, file: string): { ms: number; replies: number; errors: number } {
  try {
    return pipeLoad(s.port, file);
  } catch (err) {
    throw new Error(`${s.name}: ${(err as Error).message}`);
  }
}

interface Recovery {
  kind: Kind;
  round: number;
  position: number;
  loadMs: number;
  loadErrors: number;
  cases: Record<
    string,
    { readyMs: number; selfMs: number | null; dirBytes: number; keys: number; lost: number; stopMs?: number }
  >;
}
const recoveries: Recovery[] = [];
const caseNames = ["empty start", "kill -9", "clean stop", "compacted"];
let recoverySeconds = 0;
if (!o["skip-recovery"]) {
  const t0 = performance.now();
  progress(`recovery: writing ${recoveryKeys} SETs for redis-cli --pipe`);
  const file = await writeSetLoader(join(base, `load-${recoveryKeys}.resp`), recoveryKeys);
  for (let round = 1; round <= rounds; round++) {
    const kinds: Kind[] = round % 2 === 1 ? ["redis", "piccolo"] : ["piccolo", "redis"];
    for (const [position, kind] of kinds.entries()) {
      const dir = join(base, `rec-${kind}-${round}`, "data");
      const port = await freePort();
      let s = await start(kind, "everysec", dir, port, "load");
      try {
        // The fixed cost of a start (process, modules, threads), to set the restarts below against.
        const empty = await waitReady(s, 0, 60_000);
        const rec: Recovery = { kind, round, position, loadMs: 0, loadErrors: 0, cases: {} };
        rec.cases["empty start"] = { readyMs: empty.ms, selfMs: selfReportedMs(s), dirBytes: 0, keys: 0, lost: 0 };
        recoveries.push(rec);
        progress(`recovery round ${round}/${rounds} ${kind}: loading ${recoveryKeys} keys`);
        const l = load(s, file);
        rec.loadMs = l.ms;
        rec.loadErrors = l.errors;
        await waitReady(s, recoveryKeys, 60_000);
        let expected = recoveryKeys; // what the server acknowledged and should come back with
        const restart = async (name: string, stopMs?: number) => {
          const bytes = dirBytes(dir);
          progress(`recovery round ${round}/${rounds} ${kind}: restart after ${name} (${bytes} bytes)`);
          s = await start(kind, "everysec", dir, port, name.replace(/\W+/g, ""));
          const ready = await waitReady(s, expected, 600_000, 1000);
          if (ready.keys !== expected)
            console.error(`\n${kind} round ${round}: after ${name}, ${ready.keys} keys of ${expected} (see ${s.log})`);
          rec.cases[name] = {
            readyMs: ready.ms,
            selfMs: selfReportedMs(s),
            dirBytes: bytes,
            keys: ready.keys,
            lost: expected - ready.keys,
            ...(stopMs === undefined ? {} : { stopMs }),
          };
          expected = ready.keys;
        };
        // A kill in the middle of a rewrite would leave Redis's rewriting child running on; let both finish theirs.
        await quiesce(s);
        await kill9(s);
        await restart("kill -9");
        await restart("clean stop", await stopClean(s));
        if (kind === "redis") {
          await respCommands(port, [["BGREWRITEAOF"]]);
          await sleep(50);
        } else await respCommands(port, [["SAVE"]]);
        await quiesce(s);
        await restart("compacted", await stopClean(s));
        await stopClean(s);
      } finally {
        if (s.child.exitCode === null && s.child.signalCode === null) await kill9(s);
      }
      rmSync(dir, { recursive: true, force: true });
    }
  }
  progressDone();
  recoverySeconds = (performance.now() - t0) / 1000;
}

// ------------------------------------------------------------------- report

function stats(cs: Cell[]) {
  return {
    rps: median(cs.map((c) => c.rps)),
    p50ms: median(cs.map((c) => c.p50ms)),
    p99ms: median(cs.map((c) => c.p99ms)),
    p999ms: median(cs.map((c) => c.p999ms)),
    over10ms: median(cs.map((c) => c.over10ms)),
    rounds: cs.map((c) => c.rps),
  };
}

const rows: (string | number)[][] = [];
const summary: Record<string, unknown>[] = [];
if (cells.length > 0)
  for (const config of configs)
    for (const test of tests)
      for (const policy of policies) {
        const pick = (kind: Kind) =>
          cells.filter((c) => c.kind === kind && c.policy === policy && c.config === config.name && c.test === test);
        const r = stats(pick("redis"));
        const p = stats(pick("piccolo"));
        const ratio = p.rps / r.rps;
        // Redis and Piccolo of one policy run next to each other in every round: the ratio within each round.
        const roundRatios = pick("piccolo").map((c) => {
          const twin = pick("redis").find((x) => x.round === c.round);
          return twin === undefined ? Number.NaN : c.rps / twin.rps;
        });
        summary.push({ config: config.name, test, policy, redis: r, piccolo: { ...p, ratio, roundRatios } });
        rows.push([
          config.name,
          test,
          policy,
          Math.round(r.rps),
          Math.round(p.rps),
          ratio.toFixed(2),
          `${r.p50ms}/${r.p99ms}/${r.p999ms}`,
          `${p.p50ms}/${p.p99ms}/${p.p999ms}`,
          `${r.over10ms}/${p.over10ms}`,
          `${Math.round(Math.min(...r.rounds))}-${Math.round(Math.max(...r.rounds))}`,
          `${Math.round(Math.min(...p.rounds))}-${Math.round(Math.max(...p.rounds))}`,
          roundRatios.map((x) => x.toFixed(2)).join(" "),
        ]);
      }

const recRows: (string | number)[][] = [];
const recSummary: Record<string, unknown>[] = [];
if (recoveries.length > 0) {
  const of = (kind: Kind) => recoveries.filter((r) => r.kind === kind);
  for (const kind of ["redis", "piccolo"] as Kind[]) {
    const rs = of(kind);
    recRows.push([
      kind,
      "load (redis-cli --pipe)",
      Math.round(median(rs.map((r) => r.loadMs))),
      "",
      "",
      rs.map((r) => r.loadErrors).join(" "),
      rs.map((r) => Math.round(r.loadMs)).join(" "),
    ]);
  }
  for (const name of caseNames) {
    const entry: Record<string, unknown> = { case: name };
    for (const kind of ["redis", "piccolo"] as Kind[]) {
      const cs = of(kind).map((r) => r.cases[name]!);
      const selfs = cs.map((c) => c.selfMs).filter((x): x is number => x !== null);
      const e = {
        readyMs: median(cs.map((c) => c.readyMs)),
        selfMs: selfs.length ? median(selfs) : null,
        dirBytes: median(cs.map((c) => c.dirBytes)),
        rounds: cs.map((c) => Math.round(c.readyMs)),
        lost: cs.map((c) => c.lost),
      };
      entry[kind] = e;
      recRows.push([
        kind,
        name,
        Math.round(e.readyMs),
        e.selfMs === null ? "-" : Math.round(e.selfMs),
        (e.dirBytes / 1e6).toFixed(1),
        e.lost.join(" "),
        e.rounds.join(" "),
      ]);
    }
    const r = entry.redis as { readyMs: number };
    const p = entry.piccolo as { readyMs: number };
    entry.ratio = r.readyMs / p.readyMs;
    recSummary.push(entry);
  }
}

if (rows.length > 0) {
  console.log(
    `\nredis-benchmark -t set,get -d 64 -r 100000 -c 50, median of ${rounds} rounds` +
      ` (ops/s; ratio = Piccolo/Redis at the same policy; latency p50/p99/p99.9 ms; requests over 10 ms; min-max over rounds)\n`,
  );
  console.log(
    table(
      [
        "config",
        "test",
        "fsync",
        "redis",
        "piccolo",
        "ratio",
        "redis p50/p99/p99.9",
        "piccolo p50/p99/p99.9",
        ">10 ms redis/piccolo",
        "redis range",
        "piccolo range",
        "ratio by round",
      ],
      rows,
    ),
  );
}
for (const [name, f] of Object.entries(throughputInfo))
  if (f.piccolo_fsyncs !== undefined) {
    // Every SET of every round: GETs write nothing and commit no fsync.
    const sets = rounds * configs.reduce((n, c) => n + Math.round(c.n * scale), 0);
    const perFsync = sets / Number(f.piccolo_fsyncs);
    console.log(
      `${name}: ${f.piccolo_fsyncs} fsyncs for ${sets} SETs (${perFsync.toFixed(1)} per fsync, all shards),` +
        ` mean ${f.piccolo_fsync_avg_ms} ms, max ${f.piccolo_fsync_max_ms} ms; data dir ${(throughputDirs[name]! / 1e6).toFixed(1)} MB`,
    );
  }
if (recRows.length > 0) {
  console.log(
    `\nrecovery of ${recoveryKeys} keys (16-byte keys, 64-byte values; fsync everysec), median of ${rounds} rounds:` +
      ` ms from spawn to PONG and DBSIZE ${recoveryKeys}; self = the server's own figure; dir = data before the restart; lost keys per round = acknowledged keys missing after the restart (load: redis-cli --pipe errors)\n`,
  );
  console.log(table(["server", "case", "ready ms", "self ms", "dir MB", "lost keys", "rounds (ms)"], recRows));
  for (const e of recSummary)
    console.log(`  ${e.case}: Redis/Piccolo time = ${(e.ratio as number).toFixed(2)} (above 1: Piccolo is faster)`);
}

const head = spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout.trim();
const fs = spawnSync("df", ["-T", base], { encoding: "utf8" }).stdout.trim().split("\n").pop();
mkdirSync(String(o.out), { recursive: true });
writeFileSync(
  `${o.out}/durable.json`,
  `${JSON.stringify(
    {
      machine: machine(),
      commit: head,
      command: commandLine,
      redis: spawnSync("redis-server", ["--version"], { encoding: "utf8" }).stdout.trim(),
      filesystem: fs,
      rounds,
      scale,
      recoveryKeys,
      throughputSeconds,
      recoverySeconds,
      throughputDirBytes: throughputDirs,
      throughputInfoPersistence: throughputInfo,
      summary,
      recovery: recSummary,
      cells,
      recoveries,
    },
    null,
    2,
  )}\n`,
);
const bars = summary.flatMap((e) =>
  (["redis", "piccolo"] as Kind[]).map((kind) => ({
    group: `${e.test} ${e.config}`,
    series: `${kind} ${e.policy}`,
    value: (e[kind] as { rps: number }).rps,
  })),
);
writeFileSync(
  `${o.out}/durable.svg`,
  barChart("redis-benchmark, durable: Redis AOF vs Piccolo journal (median ops/s)", "ops/s", bars),
);
writeFileSync(
  `${o.out}/durable-recovery.svg`,
  barChart(
    `Recovery of ${recoveryKeys >= 1e6 ? `${recoveryKeys / 1e6}M` : `${recoveryKeys / 1e3}k`} keys: ms to ready (lower is better)`,
    "ms",
    recSummary.flatMap((e) =>
      (["redis", "piccolo"] as Kind[]).map((kind) => ({
        group: e.case as string,
        series: kind,
        value: Math.round((e[kind] as { readyMs: number }).readyMs),
      })),
    ),
  ),
);
console.log(
  `\nwrote ${o.out}/durable.json, durable.svg and durable-recovery.svg (${throughputSeconds.toFixed(0)} s + ${recoverySeconds.toFixed(0)} s)`,
);
rmSync(base, { recursive: true, force: true });
