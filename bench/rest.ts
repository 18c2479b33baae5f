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
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { constants, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import * as hdr from "hdr-histogram-js";
import { freePort } from "./lib/ports.js";
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

// ---- child processes: all of them die with this process -------------------

const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;
const children = new Set<ChildProcess>();
const cleanups: (() => void)[] = [];
let stopping = false;
function cleanup(): void {
  stopping = true;
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  children.clear();
  for (const f of cleanups.splice(0)) {
    try {
      f();
    } catch {}
  }
}
process.on("exit", cleanup);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
  process.on(sig, () => {
    progressDone();
    console.error(`bench:rest: ${sig}, stopping the node, the Cerializer and etcd`);
    process.exit(128 + constants.signals[sig]);
  });

/** Spawns a child that is killed on exit; it dying on its own before then ends the benchmark. */
function child(name: string, cmd: string, args: string[], tail?: string[]): ChildProcess {
  const c = spawn(cmd, args, { stdio: ["ignore", "pipe", tail ? "pipe" : "inherit"] });
  children.add(c);
  if (tail)
    c.stderr!.on("data", (d: Buffer) => {
      tail.push(d.toString());
      if (tail.length > 50) tail.shift();
    });
  c.once("error", (e) => {
    console.error(`bench:rest: ${name}: ${e.message}`);
    process.exit(1);
  });
  c.once("exit", (code, signal) => {
    children.delete(c);
    if (stopping) return;
    progressDone();
    console.error(`bench:rest: ${name} exited on its own (code ${code}, signal ${signal})`);
    if (tail?.length) console.error(tail.join(""));
    process.exit(1);
  });
  return c;
}

function waitLine(c: ChildProcess, re: RegExp, what: string): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`${what} did not start within 20 s: ${out}`)), 20_000);
    c.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = re.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- etcd: find it, or install it when root, or go on without it -----------

function etcdVersionOf(bin: string): string | null {
  const r = spawnSync(bin, ["--version"], { encoding: "utf8" });
  if (r.status !== 0 || !r.stdout) return null;
  return /etcd Version:\s*(\S+)/.exec(r.stdout)?.[1] ?? r.stdout.split("\n")[0]!.trim();
}

let etcdVersion = etcdVersionOf(etcdBin);
let etcdMissing: string | null = null;
if (etcdVersion === null) {
  console.error(
    `bench:rest: etcd (${etcdBin}) is not installed. Install it with:\n` +
      "  apt-get update && apt-get install -y etcd-server",
  );
  if (process.getuid?.() === 0) {
    console.error("bench:rest: running as root: installing etcd-server now");
    spawnSync("sh", ["-c", "apt-get update && apt-get install -y etcd-server"], {
      stdio: ["ignore", 2, 2],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      timeout: 600_000,
    });
    etcdVersion = etcdVersionOf(etcdBin);
  }
  if (etcdVersion === null) {
    etcdMissing = "etcd is not installed and could not be installed here: only the Piccolo half was run.";
    console.error(`bench:rest: ${etcdMissing}`);
  }
}

// ---- the two systems -------------------------------------------------------

async function startPiccolo(): Promise<string> {
  // Durable as it starts by default (fsync everysec), in a fresh directory; etcd is durable too.
  const node = child("piccolo node", process.execPath, [
    CLI,
    "server",
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--resp-port",
    "0",
    "--data-dir",
    mkdtempSync(join(tmpdir(), "piccolo-bench-rest-")),
  ]);
  const port = Number((await waitLine(node, /listening on 127\.0\.0\.1:(\d+)/, "piccolo node"))[1]);
  const gw = child("cerializer", process.execPath, [
    CLI,
    "cerializer",
    "--host",
    "127.0.0.1",
    "--http-port",
    "0",
    "--nodes",
    `127.0.0.1:${port}`,
  ]);
  const m = await waitLine(gw, /cerializer listening on http:\/\/127\.0\.0\.1:(\d+)/, "cerializer");
  return `http://127.0.0.1:${m[1]}`;
}

/** Starts etcd; answers its client URL and the gateway's path prefix (/v3, or /v3beta on 3.3). */
async function startEtcd(version: string): Promise<{ base: string; prefix: string }> {
  const dir = mkdtempSync(join(tmpdir(), "piccolo-bench-etcd-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const c = `http://127.0.0.1:${await freePort()}`;
  const p = `http://127.0.0.1:${await freePort()}`;
  const [major = 0, minor = 0] = version.split(".").map(Number);
  const quiet = major > 3 || (major === 3 && minor >= 4) ? ["--logger=zap", "--log-level=error"] : [];
  const tail: string[] = [];
  const proc = child(
    "etcd",
    etcdBin,
    [
      "--name=bench",
      `--data-dir=${dir}`,
      `--listen-client-urls=${c}`,
      `--advertise-client-urls=${c}`,
      `--listen-peer-urls=${p}`,
      `--initial-advertise-peer-urls=${p}`,
      `--initial-cluster=bench=${p}`,
      "--initial-cluster-state=new",
      ...quiet,
    ],
    tail,
  );
  proc.stdout!.resume();
  for (let i = 0; i < 200; i++) {
    for (const prefix of ["/v3", "/v3beta", "/v3alpha"]) {
      try {
        const r = await fetch(`${c}${prefix}/kv/range`, {
          method: "POST",
          body: JSON.stringify({ key: b64("probe") }),
        });
        await r.arrayBuffer();
        if (r.ok) return { base: c, prefix };
      } catch {
        break; // not listening yet
      }
    }
    await sleep(100);
  }
  throw new Error(`etcd did not answer on /v3, /v3beta or /v3alpha within 20 s:\n${tail.join("")}`);
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");
const keyOf = (i: number) => `key-${String(i).padStart(12, "0")}`; // 16 bytes
const PRELOAD_VALUE = "p".repeat(64);
const PUT_VALUE = "v".repeat(64);

interface Req {
  method: "GET" | "PUT" | "POST";
  path: string;
  body?: string;
  headers?: Record<string, string>;
}
interface Target {
  name: string;
  base: string;
  get(key: string): Req;
  put(key: string, value: string): Req;
  /** The value in a GET answer's body, or null. */
  valueOf(body: string): string | null;
}

// A new headers object per request: autocannon writes Content-Length into the one it is given.
const json = () => ({ "content-type": "application/json" });
const targets: Target[] = [
  {
    name: "piccolo",
    base: await startPiccolo(),
    get: (k) => ({ method: "GET", path: `/v1/kv/${k}` }),
    put: (k, v) => ({
      method: "PUT",
      path: `/v1/kv/${k}`,
      body: v,
      headers: { "content-type": "application/octet-stream" },
    }),
    valueOf: (body) => body,
  },
];
let etcdPrefix = "";
if (etcdVersion !== null) {
  const { base, prefix } = await startEtcd(etcdVersion);
  etcdPrefix = prefix;
  targets.push({
    name: "etcd",
    base,
    get: (k) => ({
      method: "POST",
      path: `${prefix}/kv/range`,
      body: JSON.stringify({ key: b64(k) }),
      headers: json(),
    }),
    put: (k, v) => ({
      method: "POST",
      path: `${prefix}/kv/put`,
      body: JSON.stringify({ key: b64(k), value: b64(v) }),
      headers: json(),
    }),
    valueOf: (body) => {
      const kv = (JSON.parse(body) as { kvs?: { value?: string }[] }).kvs?.[0];
      return kv?.value === undefined ? null : Buffer.from(kv.value, "base64").toString();
    },
  });
}

async function send(t: Target, r: Req): Promise<{ status: number; body: string }> {
  const res = await fetch(t.base + r.path, {
    method: r.method,
    ...(r.body === undefined ? {} : { body: r.body }),
    ...(r.headers ? { headers: r.headers } : {}),
  });
  return { status: res.status, body: await res.text() };
}

/** Reads a few keys back: each must hold one of the two values the benchmark writes. */
async function checkValues(t: Target, when: string): Promise<void> {
  for (const i of [0, Math.floor(keyCount / 2), keyCount - 1]) {
    const { status, body } = await send(t, t.get(keyOf(i)));
    const v = status === 200 ? t.valueOf(body) : null;
    if (v !== PRELOAD_VALUE && v !== PUT_VALUE)
      throw new Error(`${t.name}: read back of ${keyOf(i)} ${when}: ${status} ${body.slice(0, 200)}`);
  }
}

// Preload every key into both, 64 requests at a time, and read some back.
for (const t of targets) {
  progress(`preloading ${keyCount} keys into ${t.name}`);
  for (let i = 0; i < keyCount; i += 64) {
    await Promise.all(
      Array.from({ length: Math.min(64, keyCount - i) }, async (_, j) => {
        const { status, body } = await send(t, t.put(keyOf(i + j), PRELOAD_VALUE));
        if (status < 200 || status > 299) throw new Error(`${t.name} preload: ${status} ${body}`);
      }),
    );
  }
  await checkValues(t, "after the preload");
}
progressDone();

// ---- the load --------------------------------------------------------------

interface Cell {
  target: string;
  workload: string;
  round: number;
  seconds: number;
  requests: number;
  rps: number;
  /** From every 2xx response's own time (microsecond resolution). */
  p50ms: number;
  p99ms: number;
  maxMs: number;
  /** autocannon's own percentiles (whole milliseconds), for comparison. */
  autocannonP50ms: number;
  autocannonP99ms: number;
  non2xx: number;
  /** Socket errors and timeouts (autocannon counts timeouts among errors). */
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
}

function run(t: Target, workload: "GET" | "PUT", round: number, seconds: number): Promise<Cell> {
  const h = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: t.base,
        connections,
        pipelining: 1,
        duration: seconds,
        requests: [
          {
            setupRequest: (req) => {
              const k = keyOf(Math.floor(Math.random() * keyCount));
              return { ...req, ...(workload === "GET" ? t.get(k) : t.put(k, PUT_VALUE)) } as typeof req;
            },
          },
        ],
      },
      (err, r) => {
        if (err) return reject(err);
        const statusCodes: Record<string, number> = {};
        for (const [code, s] of Object.entries(r.statusCodeStats ?? {})) statusCodes[code] = s.count ?? 0;
        const ok = h.totalCount > 0;
        resolve({
          target: t.name,
          workload,
          round,
          seconds: r.duration,
          requests: r.requests.total,
          rps: r.requests.total / r.duration,
          p50ms: ok ? h.getValueAtPercentile(50) / 1000 : Number.NaN,
          p99ms: ok ? h.getValueAtPercentile(99) / 1000 : Number.NaN,
          maxMs: ok ? h.maxValue / 1000 : Number.NaN,
          autocannonP50ms: r.latency.p50,
          autocannonP99ms: r.latency.p99,
          non2xx: r.non2xx,
          errors: r.errors,
          timeouts: r.timeouts,
          statusCodes,
        });
      },
    );
    instance.on("response", (_client, status, _bytes, ms) => {
      if (status >= 200 && status < 300) h.recordValue(Math.max(1, Math.round(ms * 1000)));
    });
  });
}

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
for (const t of targets) await checkValues(t, "after the load");
const loadSeconds = (Date.now() - started) / 1000;
cleanup();

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
