// npm run bench:tls: what TLS costs, side by side in one run (issue #17).
//
// 1. RESP: redis-benchmark -t set,get -c 50 -d 64 -r 100000 (-P 1 and -P 16)
//    against Redis and against Piccolo's Redis port, each over TLS and in
//    plaintext (four servers: redis-server --tls-port ... and piccolo server
//    --tls-cert-file ..., both without persistence: Piccolo with its default
//    flags plus --in-memory, as Redis runs with --save '' --appendonly no).
// 2. HTTPS: autocannon GET and PUT through the Cerializer (HTTPS, in front of
//    a node whose client ports speak TLS) against etcd's JSON gateway over
//    HTTPS, and both over plain HTTP (the same workload as bench:rest; both
//    durable as they start by default: the node with --fsync everysec).
//
// The certificates are made at the start with scripts/make-certs.sh in a temp
// dir (a CA, and one certificate for 127.0.0.1 that every server uses).
// Rounds alternate the order: odd rounds TLS first and Redis (etcd) first,
// even rounds plaintext first and Piccolo first. Reported: median requests/s,
// p50/p99, the Piccolo/Redis (Piccolo/etcd) ratio with TLS and without, and
// what TLS costs each (TLS req/s / plaintext req/s). Writes
// bench/results/tls.json, tls.md, tls.svg (RESP) and tls-https.svg.
//
//   node dist/bench/tls.js [--rounds 3] [--n 50000] [--duration 4] [--warmup 1]
//     [--connections 50] [--keys 5000] [--only resp,https] [--etcd etcd]
//     [--out bench/results]
// --n is the requests per redis-benchmark test at -P 1 (4x that at -P 16).
// The defaults take about 4 minutes; a longer run: --rounds 5 --n 100000 --duration 8.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:tls";
import { parseArgs } from "node:util";
import { findEtcd, startEtcd } from "./lib/etcd.js";
import {
  cerializerTarget,
  checkValues,
  closeAgents,
  etcdTarget,
  type HttpCell,
  type HttpTarget,
  preload,
  runHttp,
  type Workload,
} from "./lib/http.js";
import { cerializerHasHttps, startCerializer } from "./lib/piccolo.js";
import { procs } from "./lib/procs.js";
import { barChart, gitCommit, machine, markdownTable, median, progress, progressDone, table } from "./lib/report.js";
import {
  type RespServer,
  redisBenchmark,
  requireTools,
  type ServerTls,
  startPiccoloResp,
  startRedis,
} from "./lib/resp.js";

const BENCH = "bench:tls";
const { values: o } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    n: { type: "string", default: "50000" },
    duration: { type: "string", default: "4" },
    warmup: { type: "string", default: "1" },
    connections: { type: "string", default: "50" },
    keys: { type: "string", default: "5000" },
    only: { type: "string", default: "resp,https" },
    etcd: { type: "string", default: "etcd" },
    out: { type: "string", default: "bench/results" },
  },
});
function positiveInt(name: string, s: string | undefined): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`${BENCH}: --${name} must be a positive integer (got ${s})`);
    process.exit(2);
  }
  return n;
}
const rounds = positiveInt("rounds", o.rounds);
const n = positiveInt("n", o.n);
const duration = positiveInt("duration", o.duration);
const warmup = positiveInt("warmup", o.warmup);
const connections = positiveInt("connections", o.connections);
const keyCount = positiveInt("keys", o.keys);
const only = new Set(String(o.only).split(","));
for (const part of only)
  if (part !== "resp" && part !== "https") {
    console.error(`${BENCH}: --only takes resp, https or both (got ${o.only})`);
    process.exit(2);
  }
const etcdBin = String(o.etcd);
const outDir = String(o.out);
const commit = gitCommit();
const loadAtStart = loadavg().map((x) => Number(x.toFixed(2)));
const started = new Date();

requireTools(BENCH, ["redis-server", "redis-cli", "redis-benchmark"]);
if (spawnSync("openssl", ["version"]).status !== 0) {
  console.error(`${BENCH} needs openssl (scripts/make-certs.sh): apt-get install -y openssl (nothing was installed)`);
  process.exit(2);
}
const redisVersion = /v=(\S+)/.exec(spawnSync("redis-server", ["--version"], { encoding: "utf8" }).stdout)?.[1] ?? "?";

const children = procs(BENCH, "the servers");

// ---- certificates: a CA and one certificate for 127.0.0.1, made now ---------

const certDir = mkdtempSync(join(tmpdir(), "piccolo-bench-tls-"));
children.onCleanup(() => rmSync(certDir, { recursive: true, force: true }));
const makeCerts = new URL("../../scripts/make-certs.sh", import.meta.url).pathname;
const made = spawnSync("bash", [makeCerts, certDir, "server"], { encoding: "utf8" });
if (made.status !== 0) {
  console.error(`${BENCH}: ${makeCerts} failed: ${made.stderr}`);
  process.exit(1);
}
const tls: ServerTls = {
  certFile: join(certDir, "server.crt"),
  keyFile: join(certDir, "server.key"),
  caFile: join(certDir, "ca.crt"),
};
const ca = readFileSync(tls.caFile);

/** What a client negotiates with a TLS port (the CA checked): protocol and cipher, for the report. */
function handshake(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, ca, servername: "localhost" }, () => {
      const what = `${s.getProtocol()} ${s.getCipher().standardName}`;
      s.destroy();
      resolve(what);
    });
    s.once("error", reject);
  });
}
const handshakes: Record<string, string> = {};

const sys = (tlsOn: boolean, name: string) => (tlsOn ? `${name} TLS` : name);
const modes = [true, false];
/** Odd rounds: TLS first, then plaintext, each with `first` before `second`; even rounds the other way round. */
const order = <T>(round: number, xs: T[]) => (round % 2 ? xs : [...xs].reverse());

// ---- 1. RESP: redis-benchmark against Redis and Piccolo, TLS and plaintext ---

interface RespCell {
  system: "redis" | "piccolo";
  tls: boolean;
  config: string;
  test: string;
  round: number;
  rps: number;
  p50ms: number;
  p99ms: number;
}
const respConfigs = [
  { name: "c50 P1", args: ["-c", "50", "-P", "1"], n },
  { name: "c50 P16", args: ["-c", "50", "-P", "16"], n: 4 * n },
];
const respTests = ["SET", "GET"];
const respCells: RespCell[] = [];
const rbArgs = (count: number) => ["-t", "set,get", "-d", "64", "-r", "100000", "-n", String(count)];

if (only.has("resp")) {
  const servers: { system: "redis" | "piccolo"; tls: boolean; s: RespServer }[] = [];
  for (const tlsOn of modes) {
    const t = tlsOn ? { tls } : {};
    servers.push({
      system: "redis",
      tls: tlsOn,
      s: await startRedis({ name: sys(tlsOn, "redis"), procs: children, ...t }),
    });
    servers.push({
      system: "piccolo",
      tls: tlsOn,
      // As users start it, without persistence like the Redis beside it.
      s: await startPiccoloResp(sys(tlsOn, "piccolo"), ["--in-memory"], { procs: children, ...t }),
    });
  }
  for (const x of servers) if (x.tls) handshakes[`${x.s.name} (RESP)`] = await handshake(x.s.port);
  // Warm-up: Piccolo's JIT, both servers' first allocations (not counted).
  for (const x of servers) {
    progress(`warm-up ${x.s.name}`);
    redisBenchmark(x.s, [...rbArgs(20_000), "-c", "50", "-P", "16"]);
  }
  const total = rounds * respConfigs.length * servers.length;
  let done = 0;
  for (let round = 1; round <= rounds; round++)
    for (const config of respConfigs)
      for (const tlsOn of order(round, modes))
        for (const system of order(round, ["redis", "piccolo"] as const)) {
          const x = servers.find((y) => y.system === system && y.tls === tlsOn)!;
          progress(`round ${round}/${rounds} ${config.name} ${x.s.name} (${++done}/${total})`);
          const lines = redisBenchmark(x.s, [...rbArgs(config.n), ...config.args]);
          if (lines.length === 0) throw new Error(`redis-benchmark printed nothing against ${x.s.name}`);
          for (const l of lines)
            respCells.push({
              system,
              tls: tlsOn,
              config: config.name,
              test: l.test,
              round,
              rps: l.rps,
              p50ms: l.p50ms,
              p99ms: l.p99ms,
            });
        }
  progressDone();
  for (const x of servers) await children.stop(x.s.child);
}

// ---- 2. HTTPS: the Cerializer against etcd's JSON gateway, TLS and plaintext -

const workloads: Workload[] = ["GET", "PUT"];
const httpCells: { system: "etcd" | "piccolo"; tls: boolean; cell: HttpCell }[] = [];
let httpsSkipped: string | null = null;
let etcdVersion: string | null = null;
let etcdMissing: string | null = null;
let etcdPrefix = "";

if (only.has("https")) {
  if (!cerializerHasHttps()) {
    httpsSkipped = "the Cerializer's HTTPS is not available in this build: the HTTPS half was not run.";
    console.error(`${BENCH}: ${httpsSkipped}`);
  } else {
    ({ version: etcdVersion, missing: etcdMissing } = findEtcd(BENCH, etcdBin));
    const targets: { system: "etcd" | "piccolo"; tls: boolean; t: HttpTarget }[] = [];
    for (const tlsOn of modes) {
      // Durable as the node starts by default (fsync everysec), in a fresh directory; etcd is durable too.
      const dataDir = mkdtempSync(join(tmpdir(), "piccolo-bench-tls-data-"));
      children.onCleanup(() => rmSync(dataDir, { recursive: true, force: true }));
      const base = await startCerializer(children, { dataDir, ...(tlsOn ? { tls } : {}) });
      targets.push({ system: "piccolo", tls: tlsOn, t: cerializerTarget(sys(tlsOn, "piccolo"), base, ca) });
      if (etcdVersion !== null) {
        const e = await startEtcd(
          children,
          etcdBin,
          etcdVersion,
          tlsOn ? { certFile: tls.certFile, keyFile: tls.keyFile, ca } : undefined,
        );
        etcdPrefix = e.prefix;
        targets.push({ system: "etcd", tls: tlsOn, t: etcdTarget(sys(tlsOn, "etcd"), e.base, e.prefix, ca) });
      }
    }
    children.onCleanup(closeAgents);
    for (const x of targets) {
      if (x.tls) handshakes[`${x.t.name} (HTTPS)`] = await handshake(Number(new URL(x.t.base).port));
      progress(`preloading ${keyCount} keys into ${x.t.name}`);
      await preload(x.t, keyCount);
      await checkValues(x.t, keyCount, "after the preload");
    }
    const run = (x: (typeof targets)[number], w: Workload, round: number, seconds: number) =>
      runHttp(x.t, w, round, { seconds, connections, keyCount });
    for (const w of workloads)
      for (const x of targets) {
        progress(`warm-up ${w} ${x.t.name} (${warmup} s)`);
        await run(x, w, 0, warmup);
      }
    for (let round = 1; round <= rounds; round++)
      for (const w of workloads)
        for (const tlsOn of order(round, modes))
          for (const system of order(round, ["etcd", "piccolo"] as const)) {
            const x = targets.find((y) => y.system === system && y.tls === tlsOn);
            if (!x) continue; // no etcd
            progress(`round ${round}/${rounds} ${w} ${x.t.name} (${duration} s)`);
            const cell = await run(x, w, round, duration);
            httpCells.push({ system, tls: tlsOn, cell });
            progress(
              `round ${round}/${rounds} ${w} ${x.t.name}: ${Math.round(cell.rps)} req/s, p99 ${cell.p99ms.toFixed(2)} ms`,
            );
          }
    progressDone();
    for (const x of targets) await checkValues(x.t, keyCount, "after the load");
  }
}
const loadAtEnd = loadavg().map((x) => Number(x.toFixed(2)));
children.cleanup();

// ---- the report --------------------------------------------------------------

const fmt = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : "n/a");
const int = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "n/a");
interface Stats {
  rps: number;
  p50ms: number;
  p99ms: number;
  /** req/s of each round, in round order */
  rounds: number[];
}
type Measured = { round: number; rps: number; p50ms: number; p99ms: number };
function stats(cs: Measured[]): Stats {
  return {
    rps: cs.length ? median(cs.map((c) => c.rps)) : Number.NaN,
    p50ms: cs.length ? median(cs.map((c) => c.p50ms)) : Number.NaN,
    p99ms: cs.length ? median(cs.map((c) => c.p99ms)) : Number.NaN,
    rounds: [...cs].sort((x, y) => x.round - y.round).map((c) => c.rps),
  };
}

interface Ratios {
  /** Piccolo TLS / other TLS */
  tls: number;
  /** Piccolo / other, plaintext */
  plain: number;
  /** other's TLS req/s / its plaintext req/s */
  otherTlsCost: number;
  /** Piccolo's TLS req/s / its plaintext req/s */
  piccoloTlsCost: number;
}
interface Row {
  group: string;
  test: string;
  other: { tls: Stats; plain: Stats };
  piccolo: { tls: Stats; plain: Stats };
  /** Of the medians. */
  ratios: Ratios;
  /** The same within each round (the four ran back to back in it). */
  byRound: Ratios[];
}
const ratiosOf = (o: { tls: number; plain: number }, p: { tls: number; plain: number }): Ratios => ({
  tls: p.tls / o.tls,
  plain: p.plain / o.plain,
  otherTlsCost: o.tls / o.plain,
  piccoloTlsCost: p.tls / p.plain,
});

/**
 * One row per (config, test): the four contenders' medians, the Piccolo/other ratio with TLS and without,
 * and each one's TLS req/s over its plaintext req/s (the cost of TLS: 1.00 is free); the same ratios by round.
 */
function summarize(
  other: "redis" | "etcd",
  keys: { group: string; test: string }[],
  pick: (system: string, tlsOn: boolean, group: string, test: string) => Measured[],
  latDigits: number,
) {
  const summary: Row[] = keys.map(({ group, test }) => {
    const s = (system: string, tlsOn: boolean) => stats(pick(system, tlsOn, group, test));
    const o = { tls: s(other, true), plain: s(other, false) };
    const p = { tls: s("piccolo", true), plain: s("piccolo", false) };
    const byRound = o.tls.rounds.map((_, i) =>
      ratiosOf(
        { tls: o.tls.rounds[i]!, plain: o.plain.rounds[i]! },
        { tls: p.tls.rounds[i]!, plain: p.plain.rounds[i]! },
      ),
    );
    const ratios = ratiosOf({ tls: o.tls.rps, plain: o.plain.rps }, { tls: p.tls.rps, plain: p.plain.rps });
    return { group, test, other: o, piccolo: p, ratios, byRound };
  });
  const O = other === "redis" ? "Redis" : "etcd";
  const header = [
    "config",
    "test",
    `${O} TLS`,
    "Piccolo TLS",
    "ratio TLS",
    O,
    "Piccolo",
    "ratio plain",
    `${O} TLS/plain`,
    "Piccolo TLS/plain",
  ];
  const rows = summary.map((x) => [
    x.group,
    x.test,
    int(x.other.tls.rps),
    int(x.piccolo.tls.rps),
    fmt(x.ratios.tls),
    int(x.other.plain.rps),
    int(x.piccolo.plain.rps),
    fmt(x.ratios.plain),
    fmt(x.ratios.otherTlsCost),
    fmt(x.ratios.piccoloTlsCost),
  ]);
  const lat = (s: Stats) => `${fmt(s.p50ms, latDigits)} / ${fmt(s.p99ms, latDigits)}`;
  const latHeader = [
    "config",
    "test",
    `${O} TLS p50 / p99 ms`,
    "Piccolo TLS p50 / p99 ms",
    `${O} p50 / p99 ms`,
    "Piccolo p50 / p99 ms",
  ];
  const latRows = summary.map((x) => [
    x.group,
    x.test,
    lat(x.other.tls),
    lat(x.piccolo.tls),
    lat(x.other.plain),
    lat(x.piccolo.plain),
  ]);
  const each = (x: Row, f: (r: Ratios) => number) => x.byRound.map((r) => fmt(f(r))).join(" ");
  const roundHeader = ["config", "test", "ratio TLS", "ratio plain", `${O} TLS/plain`, "Piccolo TLS/plain"];
  const roundRows = summary.map((x) => [
    x.group,
    x.test,
    each(x, (r) => r.tls),
    each(x, (r) => r.plain),
    each(x, (r) => r.otherTlsCost),
    each(x, (r) => r.piccoloTlsCost),
  ]);
  return { summary, header, rows, latHeader, latRows, roundHeader, roundRows };
}

const respKeys = respConfigs.flatMap((c) => respTests.map((test) => ({ group: c.name, test })));
// redis-benchmark's latencies have 3 decimals; autocannon's (hdr, µs) are shown to 2.
const resp = summarize(
  "redis",
  respKeys,
  (system, tlsOn, group, test) =>
    respCells.filter((c) => c.system === system && c.tls === tlsOn && c.config === group && c.test === test),
  3,
);
const httpKeys = workloads.map((w) => ({ group: `c${connections}`, test: w }));
const http = summarize(
  "etcd",
  httpKeys,
  (system, tlsOn, _group, test) =>
    httpCells.filter((c) => c.system === system && c.tls === tlsOn && c.cell.workload === test).map((c) => c.cell),
  2,
);

const respRounds = respCells.map((c) => [
  c.round,
  c.config,
  c.test,
  sys(c.tls, c.system),
  int(c.rps),
  fmt(c.p50ms, 3),
  fmt(c.p99ms, 3),
]);
const respRoundsHeader = ["round", "config", "test", "target", "req/s", "p50 ms", "p99 ms"];
const httpRounds = httpCells.map(({ cell: c }) => [
  c.round,
  c.workload,
  c.target,
  int(c.rps),
  fmt(c.p50ms),
  fmt(c.p99ms),
  fmt(c.maxMs),
  c.non2xx,
  c.errors,
]);
const httpRoundsHeader = ["round", "workload", "target", "req/s", "p50 ms", "p99 ms", "max ms", "non-2xx", "errors"];
const httpBad = httpCells.reduce((a, { cell: c }) => a + c.non2xx + c.errors, 0);

const m = machine();
const command = `node dist/bench/tls.js --rounds ${rounds} --n ${n} --duration ${duration} --warmup ${warmup} --connections ${connections} --keys ${keyCount} --only ${[...only].join(",")}`;
const respSetup =
  `redis-benchmark -t set,get -c 50 -d 64 -r 100000, -n ${n} at -P 1 and ${4 * n} at -P 16, median of ${rounds} ` +
  `rounds; Redis ${redisVersion} (--save '' --appendonly no) against \`piccolo server --in-memory\` (otherwise ` +
  "default flags), each over TLS (redis-benchmark --tls --cacert) and in plaintext";
const httpSetup =
  `HTTP/1.1 through the Cerializer (one Piccolo node, durable by default, --fsync everysec) vs ` +
  (etcdVersion !== null
    ? `etcd ${etcdVersion}'s JSON gateway (${etcdPrefix}/kv/range, ${etcdPrefix}/kv/put)`
    : "no etcd") +
  `, each over HTTPS (the Cerializer also speaks TLS to its node) and over HTTP; autocannon -c ${connections} -p 1, ` +
  `${duration} s x ${rounds} rounds (median), ${warmup} s warm-up per workload and target; ${keyCount} keys, ` +
  "16 B keys, 64 B values";
const notes = [
  "Order: odd rounds run TLS first and Redis (etcd) first, even rounds plaintext first and Piccolo first.",
  "Ratio TLS is Piccolo TLS / Redis (etcd) TLS; ratio plain the same in plaintext. TLS/plain is one system's " +
    "req/s over TLS divided by its own in plaintext (1.00: TLS costs nothing).",
  "Every server uses one certificate (EC P-256, from scripts/make-certs.sh, made at the start of the run); no " +
    "client certificates. Connections are opened once and kept (redis-benchmark's 50 clients, autocannon's " +
    "keep-alive connections), so this measures TLS records, not handshakes.",
  ...(httpCells.length
    ? [
        "autocannon is given the CA but always connects with rejectUnauthorized false (its own code): the " +
          "handshake and encryption are the same, the chain is not checked; the preload and read-backs " +
          "(node:https) check it. Its latencies are measured in the same Node process that generates the load.",
        "etcd fsyncs its WAL before answering a put (batched across concurrent puts); the Piccolo node, as it " +
          "starts by default, writes its journal before answering and fsyncs it each second (--fsync everysec): " +
          "the PUT ratio compares a weaker promise with a stronger one, with TLS and without alike (bench:rest).",
      ]
    : []),
  `All processes share this machine (${m.cores} cores; load average ${loadAtStart.join(" ")} at the start, ` +
    `${loadAtEnd.join(" ")} at the end): the load generators and the servers. Numbers are noisy.`,
  ...(httpsSkipped ? [httpsSkipped] : []),
  ...(etcdMissing ? [etcdMissing] : []),
];

const hs = Object.entries(handshakes).map(([k, v]) => `${k}: ${v}`);
if (respCells.length) {
  console.log(`\n${respSetup}\n`);
  console.log(table(resp.header, resp.rows));
  console.log(`\n${table(resp.latHeader, resp.latRows)}`);
  console.log(`\nthe same ratios in each round:\n\n${table(resp.roundHeader, resp.roundRows)}`);
}
if (httpCells.length) {
  console.log(`\n${httpSetup}\n`);
  console.log(table(http.header, http.rows));
  console.log(`\n${table(http.latHeader, http.latRows)}`);
  console.log(`\nthe same ratios in each round:\n\n${table(http.roundHeader, http.roundRows)}`);
  console.log(`\nnon-2xx and errors, all HTTP runs: ${httpBad}`);
}
console.log(`\nnegotiated: ${hs.join("; ") || "nothing (no TLS run)"}`);
console.log(`\nNotes:\n${notes.map((x) => `- ${x}`).join("\n")}`);

mkdirSync(outDir, { recursive: true });
writeFileSync(
  join(outDir, "tls.json"),
  `${JSON.stringify(
    {
      machine: m,
      commit,
      command,
      started: started.toISOString(),
      loadAverageAtStart: loadAtStart,
      loadAverageAtEnd: loadAtEnd,
      redis: redisVersion,
      etcd: etcdVersion,
      etcdGatewayPrefix: etcdPrefix || null,
      etcdMissing,
      httpsSkipped,
      handshakes,
      options: { rounds, n, duration, warmup, connections, keyCount, only: [...only] },
      resp: { summary: resp.summary, cells: respCells },
      https: { summary: http.summary, cells: httpCells },
    },
    null,
    2,
  )}\n`,
);

const bars = (s: Row[], other: string) =>
  s.flatMap((x) =>
    (
      [
        [other, x.other.plain],
        [`${other} TLS`, x.other.tls],
        ["piccolo", x.piccolo.plain],
        ["piccolo TLS", x.piccolo.tls],
      ] as const
    )
      .filter(([, st]) => Number.isFinite(st.rps))
      .map(([series, st]) => ({
        group: `${x.test} ${x.group}`,
        series,
        value: st.rps,
        note: `p99 ${fmt(st.p99ms)}`,
      })),
  );
const charts: string[] = [];
if (respCells.length) {
  writeFileSync(
    join(outDir, "tls.svg"),
    barChart("RESP over TLS and plaintext: Redis vs Piccolo (median req/s)", "requests/s", bars(resp.summary, "redis")),
  );
  charts.push("tls.svg");
}
if (httpCells.length) {
  writeFileSync(
    join(outDir, "tls-https.svg"),
    barChart(
      `HTTPS and HTTP: Cerializer vs etcd JSON gateway (c${connections}, median req/s)`,
      "requests/s",
      bars(http.summary, "etcd"),
    ),
  );
  charts.push("tls-https.svg");
}
writeFileSync(
  join(outDir, "tls.md"),
  [
    "# bench:tls: what TLS costs, Piccolo against Redis and etcd",
    "",
    `\`${command}\` (after \`npm run build\`; \`npm run bench:tls\` runs the defaults), ${started.toISOString()}, ` +
      `commit ${commit}; ${m.cpu}, ${m.cores} ` +
      `cores, Node ${process.version}.`,
    "",
    ...(respCells.length
      ? [
          "## RESP",
          "",
          `${respSetup}.`,
          "",
          markdownTable(resp.header, resp.rows),
          "",
          markdownTable(resp.latHeader, resp.latRows),
          "",
          "The same ratios in each round (the four targets ran back to back in it):",
          "",
          markdownTable(resp.roundHeader, resp.roundRows),
          "",
          "![RESP requests/s](tls.svg)",
          "",
        ]
      : []),
    ...(httpCells.length
      ? [
          "## HTTPS",
          "",
          `${httpSetup}.`,
          "",
          markdownTable(http.header, http.rows),
          "",
          markdownTable(http.latHeader, http.latRows),
          "",
          "The same ratios in each round (the four targets ran back to back in it):",
          "",
          markdownTable(http.roundHeader, http.roundRows),
          "",
          `Non-2xx answers and errors over all HTTP runs: ${httpBad}.`,
          "",
          "![HTTP requests/s](tls-https.svg)",
          "",
        ]
      : []),
    `Negotiated: ${hs.join("; ") || "nothing (no TLS run)"}.`,
    "",
    "Notes:",
    "",
    ...notes.map((x) => `- ${x}`),
    "",
    ...(respCells.length ? ["## Per round: RESP", "", markdownTable(respRoundsHeader, respRounds), ""] : []),
    ...(httpCells.length ? ["## Per round: HTTP", "", markdownTable(httpRoundsHeader, httpRounds), ""] : []),
  ].join("\n"),
);
console.log(`\nwrote ${join(outDir, "tls.json")}, tls.md${charts.map((c) => `, ${c}`).join("")}`);
