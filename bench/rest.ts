// npm run bench:rest: HTTP GET and PUT through the Cerializer against the
// same workload on etcd's own JSON gateway (grpc-gateway: POST /v3/kv/range
// and /v3/kv/put), side by side in one run, alternating A B A B.
//
// Needs the Debian package etcd-server (it installs nothing: it says what is
// missing and exits 2). Starts a Piccolo node, a Cerializer and a
// single-member etcd on free loopback ports, preloads --keys keys (16-byte
// keys, 64-byte values) into both, then for --rounds rounds runs autocannon
// (--connections connections, pipelining 1, --duration seconds) with
//   GET  a random preloaded key
//   PUT  a random preloaded key, a new 64-byte value
// and prints the median requests/s, p50 and p99 per target and the
// Piccolo/etcd ratio. Writes bench/results/rest.json and rest.svg.
//
// Caveat printed with the results: etcd fsyncs its WAL on every put and runs
// Raft even with one member; a single Piccolo node keeps its data in memory.
// The PUT ratio compares a durable write with an in-memory one.
//
//   node dist/bench/rest.js [--rounds 2] [--duration 8] [--connections 50] [--keys 10000]
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { freePort } from "./lib/ports.js";
import { barChart, machine, median, progress, progressDone, table } from "./lib/report.js";

const { values: o } = parseArgs({
  options: {
    rounds: { type: "string", default: "2" },
    duration: { type: "string", default: "8" },
    connections: { type: "string", default: "50" },
    keys: { type: "string", default: "10000" },
    out: { type: "string", default: "bench/results" },
  },
});
const rounds = Number(o.rounds);
const duration = Number(o.duration);
const connections = Number(o.connections);
const keyCount = Number(o.keys);

const etcdVersion = spawnSync("etcd", ["--version"], { encoding: "utf8" });
if (etcdVersion.status !== 0) {
  console.error("bench:rest needs etcd: apt-get install -y etcd-server (nothing was installed)");
  process.exit(2);
}

const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;
const children: ChildProcess[] = [];
const cleanups: (() => void)[] = [];
function cleanup(): void {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  for (const f of cleanups) f();
}
process.on("exit", cleanup);
process.on("SIGINT", () => process.exit(130));

function waitLine(child: ChildProcess, re: RegExp, what: string): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`${what} did not start: ${out}`)), 20_000);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = re.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
  });
}

async function startPiccolo(): Promise<string> {
  const node = spawn(process.execPath, [CLI, "server", "--host", "127.0.0.1", "--port", "0", "--resp-port", "0"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(node);
  const port = Number((await waitLine(node, /listening on 127\.0\.0\.1:(\d+)/, "node"))[1]);
  const gw = spawn(
    process.execPath,
    [CLI, "cerializer", "--host", "127.0.0.1", "--http-port", "0", "--nodes", `127.0.0.1:${port}`],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  children.push(gw);
  return `http://127.0.0.1:${(await waitLine(gw, /listening on http:\/\/127\.0\.0\.1:(\d+)/, "cerializer"))[1]}`;
}

async function startEtcd(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "piccolo-bench-etcd-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const client = await freePort();
  const peer = await freePort();
  const c = `http://127.0.0.1:${client}`;
  const p = `http://127.0.0.1:${peer}`;
  const child = spawn(
    "etcd",
    [
      "--name=bench",
      `--data-dir=${dir}`,
      `--listen-client-urls=${c}`,
      `--advertise-client-urls=${c}`,
      `--listen-peer-urls=${p}`,
      `--initial-advertise-peer-urls=${p}`,
      `--initial-cluster=bench=${p}`,
      "--logger=zap",
      "--log-level=error",
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  children.push(child);
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`${c}/v3/kv/range`, { method: "POST", body: JSON.stringify({ key: b64("probe") }) });
      if (r.ok) return c;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("etcd did not answer on /v3/kv/range");
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");
const keyOf = (i: number) => `key-${String(i).padStart(12, "0")}`; // 16 bytes
const value = "v".repeat(64);

interface Target {
  name: string;
  base: string;
  get(key: string): { method: "GET" | "POST"; path: string; body?: string; headers?: Record<string, string> };
  put(key: string): { method: "PUT" | "POST"; path: string; body: string; headers: Record<string, string> };
}

const json = { "content-type": "application/json" };
const targets: Target[] = [
  {
    name: "piccolo",
    base: await startPiccolo(),
    get: (k) => ({ method: "GET", path: `/v1/kv/${k}` }),
    put: (k) => ({
      method: "PUT",
      path: `/v1/kv/${k}`,
      body: value,
      headers: { "content-type": "application/octet-stream" },
    }),
  },
  {
    name: "etcd",
    base: await startEtcd(),
    get: (k) => ({ method: "POST", path: "/v3/kv/range", body: JSON.stringify({ key: b64(k) }), headers: json }),
    put: (k) => ({
      method: "POST",
      path: "/v3/kv/put",
      body: JSON.stringify({ key: b64(k), value: b64(value) }),
      headers: json,
    }),
  },
];

// Preload every key into both, 64 requests at a time, and check a read.
for (const t of targets) {
  progress(`preloading ${keyCount} keys into ${t.name}`);
  for (let i = 0; i < keyCount; i += 64) {
    await Promise.all(
      Array.from({ length: Math.min(64, keyCount - i) }, async (_, j) => {
        const r = t.put(keyOf(i + j));
        const res = await fetch(t.base + r.path, { method: r.method, body: r.body, headers: r.headers });
        if (!res.ok) throw new Error(`${t.name} preload: ${res.status} ${await res.text()}`);
        await res.arrayBuffer();
      }),
    );
  }
  const g = t.get(keyOf(0));
  const check = await fetch(t.base + g.path, {
    method: g.method,
    ...(g.body ? { body: g.body, headers: g.headers } : {}),
  });
  const text = await check.text();
  if (!check.ok || !text.includes(t.name === "etcd" ? b64(value) : value))
    throw new Error(`${t.name} read back: ${text}`);
}
progressDone();

interface Cell {
  target: string;
  workload: string;
  round: number;
  rps: number;
  p50ms: number;
  p99ms: number;
  non2xx: number;
  errors: number;
}

async function run(t: Target, workload: "GET" | "PUT", round: number, seconds: number): Promise<Cell> {
  const result = await autocannon({
    url: t.base,
    connections,
    pipelining: 1,
    duration: seconds,
    requests: [
      {
        setupRequest: (req) => {
          const k = keyOf(Math.floor(Math.random() * keyCount));
          return { ...req, ...(workload === "GET" ? t.get(k) : t.put(k)) } as typeof req;
        },
      },
    ],
  });
  return {
    target: t.name,
    workload,
    round,
    rps: result.requests.average,
    p50ms: result.latency.p50,
    p99ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

const cells: Cell[] = [];
const workloads = ["GET", "PUT"] as const;
// Warm-up: JIT, connection pools, etcd's first compaction of its WAL buffers.
for (const t of targets) for (const w of workloads) await run(t, w, 0, 2);
for (let round = 1; round <= rounds; round++)
  for (const w of workloads)
    for (const t of targets) {
      progress(`round ${round}/${rounds} ${w} ${t.name}`);
      cells.push(await run(t, w, round, duration));
    }
progressDone();
cleanup();

const pick = (target: string, w: string) => cells.filter((c) => c.target === target && c.workload === w);
const rows: (string | number)[][] = [];
const summary: Record<string, unknown>[] = [];
for (const w of workloads) {
  const p = pick("piccolo", w);
  const e = pick("etcd", w);
  const pr = median(p.map((c) => c.rps));
  const er = median(e.map((c) => c.rps));
  const lat = (cs: Cell[]) => `${median(cs.map((c) => c.p50ms))} / ${median(cs.map((c) => c.p99ms))}`;
  const bad = (cs: Cell[]) => cs.reduce((a, c) => a + c.non2xx + c.errors, 0);
  rows.push([w, Math.round(pr), Math.round(er), (pr / er).toFixed(2), lat(p), lat(e), `${bad(p)} / ${bad(e)}`]);
  summary.push({ workload: w, piccolo: p, etcd: e, ratio: pr / er });
}

const header = [
  "workload",
  "piccolo req/s",
  "etcd req/s",
  "ratio",
  "piccolo p50/p99 ms",
  "etcd p50/p99 ms",
  "non-2xx+errors",
];
const text = table(header, rows);
console.log(
  `\nHTTP through the Cerializer vs etcd ${etcdVersion.stdout.split("\n")[0]?.replace(/^etcd Version: /, "")} ` +
    `JSON gateway; autocannon -c ${connections} -p 1, ${duration} s x ${rounds} rounds (median); ${keyCount} keys, 16 B keys, 64 B values\n`,
);
console.log(text);
console.log(
  "\nCaveat: etcd fsyncs its WAL on every put and runs Raft with one member; a single Piccolo node is in memory.",
);

mkdirSync(o.out!, { recursive: true });
writeFileSync(
  join(o.out!, "rest.json"),
  `${JSON.stringify({ machine: machine(), etcd: etcdVersion.stdout.split("\n")[0], connections, duration, rounds, keyCount, summary, cells }, null, 2)}\n`,
);
writeFileSync(
  join(o.out!, "rest.svg"),
  barChart(
    `HTTP req/s: Cerializer + Piccolo vs etcd JSON gateway (c${connections})`,
    "requests/s",
    workloads.flatMap((w) => [
      { group: w, series: "piccolo", value: median(pick("piccolo", w).map((c) => c.rps)) },
      { group: w, series: "etcd", value: median(pick("etcd", w).map((c) => c.rps)) },
    ]),
  ),
);
console.log(`\nwrote ${join(o.out!, "rest.json")} and rest.svg`);
