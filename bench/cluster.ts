// npm run bench:cluster: a three-member Piccolo cluster against a three-member
// etcd cluster (Debian's etcd-server) on the same machine, both durable
// (Piccolo fsyncs its WAL on every round, etcd on every batch), side by side:
//
//   1. replicated PUT and linearizable GET, over HTTP for both so the client
//      side is the same: the Cerializer (--cluster true, all three members)
//      against etcd's JSON gateway (one member endpoint, as its clients do),
//      autocannon with --connections connections for --duration seconds,
//      alternating the two, --rounds rounds; requests/s, p50, p99, ratio;
//   2. failover: kill -9 of the leader of the partition holding a key (etcd:
//      of the cluster's leader), then time until the first successful write
//      of that key through another member; the median of --tries tries.
//
// It installs nothing: without etcd it says so and exits 2. Writes
// bench/results/cluster.json and cluster.svg.
//
//   node dist/bench/cluster.js [--rounds 2] [--duration 8] [--connections 50] [--tries 5] [--shards 1]
//
// --shards is each Piccolo member's group workers (0: the groups on the IO thread).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { PiccoloClient } from "../src/client/client.js";
import { freePort } from "./lib/ports.js";
import { barChart, machine, median, progress, progressDone, table } from "./lib/report.js";

const { values: o } = parseArgs({
  options: {
    rounds: { type: "string", default: "2" },
    duration: { type: "string", default: "8" },
    connections: { type: "string", default: "50" },
    tries: { type: "string", default: "5" },
    shards: { type: "string", default: "1" },
    out: { type: "string", default: "bench/results" },
  },
});
const rounds = Number(o.rounds);
const duration = Number(o.duration);
const connections = Number(o.connections);
const tries = Number(o.tries);

const etcdVersion = spawnSync("etcd", ["--version"], { encoding: "utf8" });
if (etcdVersion.status !== 0) {
  console.error("bench:cluster needs etcd: apt-get install -y etcd-server (nothing was installed)");
  process.exit(2);
}

const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;
const root = mkdtempSync(join(tmpdir(), "piccolo-bench-cluster-"));
const procs = new Set<ChildProcess>();
process.on("exit", () => {
  for (const p of procs) p.kill("SIGKILL");
  rmSync(root, { recursive: true, force: true });
});
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- Piccolo ---------------------------------------------------------------

interface PMember {
  name: string;
  port: number;
  dir: string;
  proc: ChildProcess | null;
}
const peerPorts = [await freePort(), await freePort(), await freePort()];
const list = peerPorts.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(",");
const pm: PMember[] = [];
for (let i = 0; i < 3; i++)
  pm.push({ name: `n${i + 1}`, port: await freePort(), dir: join(root, `p${i + 1}`), proc: null });

async function startPiccolo(m: PMember): Promise<void> {
  const p = spawn(
    process.execPath,
    [CLI, "server", "--host", "127.0.0.1", "--port", String(m.port), "--resp-port", "0", "--node-id", m.name].concat([
      "--cluster",
      list,
      "--data-dir",
      m.dir,
      "--shards",
      o.shards,
    ]),
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  procs.add(p);
  p.once("exit", () => procs.delete(p));
  m.proc = p;
  await waitLine(p, /listening on/, m.name);
}

// ---- etcd ------------------------------------------------------------------

interface EMember {
  name: string;
  client: string;
  peer: string;
  dir: string;
  proc: ChildProcess | null;
}
const em: EMember[] = [];
for (let i = 0; i < 3; i++)
  em.push({
    name: `e${i + 1}`,
    client: `http://127.0.0.1:${await freePort()}`,
    peer: `http://127.0.0.1:${await freePort()}`,
    dir: join(root, `e${i + 1}`),
    proc: null,
  });
const initialCluster = em.map((m) => `${m.name}=${m.peer}`).join(",");

function startEtcd(m: EMember, state: "new" | "existing"): void {
  const p = spawn(
    "etcd",
    [
      `--name=${m.name}`,
      `--data-dir=${m.dir}`,
      `--listen-client-urls=${m.client}`,
      `--advertise-client-urls=${m.client}`,
      `--listen-peer-urls=${m.peer}`,
      `--initial-advertise-peer-urls=${m.peer}`,
      `--initial-cluster=${initialCluster}`,
      `--initial-cluster-state=${state}`,
      "--initial-cluster-token=piccolo-bench",
      "--logger=zap",
      "--log-level=error",
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  procs.add(p);
  p.once("exit", () => procs.delete(p));
  m.proc = p;
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
async function etcdPut(m: EMember, key: string, value: string, timeoutMs = 1000): Promise<boolean> {
  try {
    const r = await fetch(`${m.client}/v3/kv/put`, {
      method: "POST",
      body: JSON.stringify({ key: b64(key), value: b64(value) }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = await r.text();
    return r.ok && !body.includes('"error"');
  } catch {
    return false;
  }
}

async function etcdLeader(): Promise<EMember | null> {
  for (const m of em) {
    if (m.proc === null) continue;
    try {
      const r = await fetch(`${m.client}/v3/maintenance/status`, { method: "POST", body: "{}" });
      const s = (await r.json()) as { header: { member_id: string }; leader: string };
      if (s.header.member_id === s.leader) return m;
    } catch {}
  }
  return null;
}

// ---- start both --------------------------------------------------------------

progress("starting a 3-member Piccolo cluster and a 3-member etcd cluster");
await Promise.all(pm.map(startPiccolo));
for (const m of em) startEtcd(m, "new");
const gwPort = await freePort();
const gw = spawn(
  process.execPath,
  [CLI, "cerializer", "--host", "127.0.0.1", "--http-port", String(gwPort), "--cluster", "true"].concat([
    "--nodes",
    pm.map((m) => `127.0.0.1:${m.port}`).join(","),
  ]),
  { stdio: ["ignore", "pipe", "inherit"] },
);
procs.add(gw);
await waitLine(gw, /listening on/, "cerializer");
const gwUrl = `http://127.0.0.1:${gwPort}`;
for (let i = 0; i < 200 && !(await etcdPut(em[0]!, "probe", "x")); i++) await sleep(100);

const keyCount = 10_000;
const keyOf = (i: number) => `key-${String(i).padStart(12, "0")}`;
const value = "v".repeat(64);
progress(`preloading ${keyCount} keys into both`);
for (let i = 0; i < keyCount; i += 64) {
  await Promise.all(
    Array.from({ length: Math.min(64, keyCount - i) }, async (_, j) => {
      const k = keyOf(i + j);
      for (let t = 0; t < 50; t++) {
        const r = await fetch(`${gwUrl}/v1/kv/${k}`, { method: "PUT", body: value });
        await r.arrayBuffer();
        if (r.ok) break;
        await sleep(50);
      }
      if (!(await etcdPut(em[0]!, k, value, 5000))) throw new Error(`etcd preload of ${k} failed`);
    }),
  );
}
progressDone();

// ---- throughput -------------------------------------------------------------

interface Cell {
  target: string;
  workload: string;
  round: number;
  rps: number;
  p50ms: number;
  p99ms: number;
  bad: number;
}

async function load(
  target: "piccolo" | "etcd",
  workload: "PUT" | "GET",
  seconds: number,
  round: number,
): Promise<Cell> {
  const json = { "content-type": "application/json" };
  const result = await autocannon({
    url: target === "piccolo" ? gwUrl : em[0]!.client,
    connections,
    pipelining: 1,
    duration: seconds,
    requests: [
      {
        setupRequest: (req) => {
          const k = keyOf(Math.floor(Math.random() * keyCount));
          if (target === "piccolo")
            return (
              workload === "GET"
                ? { ...req, method: "GET", path: `/v1/kv/${k}` }
                : { ...req, method: "PUT", path: `/v1/kv/${k}`, body: value }
            ) as typeof req;
          return (
            workload === "GET"
              ? { ...req, method: "POST", path: "/v3/kv/range", headers: json, body: JSON.stringify({ key: b64(k) }) }
              : {
                  ...req,
                  method: "POST",
                  path: "/v3/kv/put",
                  headers: json,
                  body: JSON.stringify({ key: b64(k), value: b64(value) }),
                }
          ) as typeof req;
        },
      },
    ],
  });
  return {
    target,
    workload,
    round,
    rps: result.requests.average,
    p50ms: result.latency.p50,
    p99ms: result.latency.p99,
    bad: result.non2xx + result.errors + result.timeouts,
  };
}

const cells: Cell[] = [];
for (const t of ["piccolo", "etcd"] as const) for (const w of ["PUT", "GET"] as const) await load(t, w, 2, 0);
for (let round = 1; round <= rounds; round++)
  for (const w of ["PUT", "GET"] as const)
    for (const t of ["piccolo", "etcd"] as const) {
      progress(`round ${round}/${rounds} ${w} ${t}`);
      cells.push(await load(t, w, duration, round));
    }
progressDone();

// ---- failover ---------------------------------------------------------------

async function piccoloFailover(attempt: number): Promise<number> {
  const key = `failover-${attempt}`;
  const c = new PiccoloClient({ host: "127.0.0.1", port: pm[0]!.port, timeoutMs: 3000 });
  await c.put(key, "before");
  // The member leading the key's partition, as member n1 sees it.
  const info = await c.clusterInfo();
  await c.close();
  const { partitionOf } = await import("../src/cluster/placement.js");
  const { initHash } = await import("../src/hash.js");
  await initHash();
  const part = partitionOf(new TextEncoder().encode(key), info.partitions.length);
  const leaderId = info.partitions[part]!.leader;
  const victim = pm[leaderId - 1]!;
  const other = pm.find((m) => m !== victim)!;
  const client = new PiccoloClient({ host: "127.0.0.1", port: other.port, timeoutMs: 2000 });
  const t0 = performance.now();
  victim.proc!.kill("SIGKILL");
  let ms = Number.NaN;
  for (;;) {
    try {
      await client.put(key, "after");
      ms = performance.now() - t0;
      break;
    } catch {
      if (performance.now() - t0 > 30_000) break;
    }
  }
  await client.close();
  await startPiccolo(victim);
  await sleep(1500);
  return ms;
}

async function etcdFailover(attempt: number): Promise<number> {
  const key = `failover-${attempt}`;
  const leader = await etcdLeader();
  if (leader === null) throw new Error("etcd has no leader");
  const other = em.find((m) => m !== leader)!;
  await etcdPut(other, key, "before", 5000);
  const t0 = performance.now();
  leader.proc!.kill("SIGKILL");
  leader.proc = null;
  let ms = Number.NaN;
  while (performance.now() - t0 < 30_000) {
    if (await etcdPut(other, key, "after", 500)) {
      ms = performance.now() - t0;
      break;
    }
  }
  startEtcd(leader, "existing");
  for (let i = 0; i < 100 && (await etcdLeader()) === null; i++) await sleep(100);
  await sleep(1500);
  return ms;
}

const failover: { piccolo: number[]; etcd: number[] } = { piccolo: [], etcd: [] };
for (let i = 0; i < tries; i++) {
  progress(`failover ${i + 1}/${tries}`);
  failover.piccolo.push(await piccoloFailover(i));
  failover.etcd.push(await etcdFailover(i));
}
progressDone();

// ---- report -----------------------------------------------------------------

const pick = (t: string, w: string) => cells.filter((c) => c.target === t && c.workload === w);
const rows: (string | number)[][] = [];
for (const w of ["PUT", "GET"]) {
  const p = pick("piccolo", w);
  const e = pick("etcd", w);
  const pr = median(p.map((c) => c.rps));
  const er = median(e.map((c) => c.rps));
  const lat = (cs: Cell[]) => `${median(cs.map((c) => c.p50ms))} / ${median(cs.map((c) => c.p99ms))}`;
  rows.push([
    w,
    Math.round(pr),
    Math.round(er),
    (pr / er).toFixed(2),
    lat(p),
    lat(e),
    `${p.reduce((a, c) => a + c.bad, 0)} / ${e.reduce((a, c) => a + c.bad, 0)}`,
  ]);
}
const fp = median(failover.piccolo);
const fe = median(failover.etcd);
rows.push([
  "failover ms (median)",
  Math.round(fp),
  Math.round(fe),
  (fp / fe).toFixed(2),
  failover.piccolo.map(Math.round).join(" "),
  failover.etcd.map(Math.round).join(" "),
  "",
]);
console.log(
  `\n3-member Piccolo (through the Cerializer) vs 3-member etcd ${etcdVersion.stdout.split("\n")[0]?.replace(/^etcd Version: /, "")} ` +
    `(JSON gateway); autocannon -c ${connections}, ${duration} s x ${rounds} rounds; failover: median of ${tries} kill -9s\n`,
);
console.log(
  table(
    ["workload", "piccolo", "etcd", "ratio", "piccolo p50/p99 ms (or tries)", "etcd p50/p99 ms (or tries)", "non-2xx"],
    rows,
  ),
);
mkdirSync(o.out!, { recursive: true });
writeFileSync(
  join(o.out!, "cluster.json"),
  `${JSON.stringify({ machine: machine(), etcd: etcdVersion.stdout.split("\n")[0], connections, duration, rounds, cells, failover }, null, 2)}\n`,
);
writeFileSync(
  join(o.out!, "cluster.svg"),
  barChart("Replicated HTTP req/s, 3 members each", "requests/s", [
    ...["PUT", "GET"].flatMap((w) => [
      { group: w, series: "piccolo", value: median(pick("piccolo", w).map((c) => c.rps)) },
      { group: w, series: "etcd", value: median(pick("etcd", w).map((c) => c.rps)) },
    ]),
  ]),
);
console.log(`\nwrote ${join(o.out!, "cluster.json")} and cluster.svg`);
process.exit(0);
