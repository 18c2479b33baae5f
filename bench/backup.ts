// npm run bench:backup: a backup and its restore of 1M keys, Piccolo against
// Redis and etcd, side by side in one run (issue #20).
//
// The team's memory workload, the same bytes for all three: 1M keys of 16
// bytes (key:%012d) with 64-byte values, loaded into
//   - Piccolo as `npm start` starts it (`piccolo server`, default flags:
//     durable, --fsync everysec, one shard worker per core) over a fresh
//     temp --data-dir, with `redis-cli --pipe` into its Redis port;
//   - Redis (redis-server --appendonly yes --appendfsync everysec --save ""
//     --repl-diskless-sync-delay 0: durable like Piccolo, no automatic
//     snapshot in the middle of a measurement), with `redis-cli --pipe`;
//   - etcd (one member, Debian's etcd-server as it starts: fsync on every
//     commit), through its JSON gateway: /v3/kv/txn of 128 puts (its default
//     --max-txn-ops), 16 at a time.
// Then, for --rounds rounds, the contenders in turn (the order reversed
// every round):
//   Piccolo: `piccolo backup FILE --server` (the CLI's wall clock; the file's
//            bytes), `piccolo restore FILE --data-dir NEW` (wall clock), and
//            `piccolo server --data-dir NEW` until it answers DBSIZE with
//            every key (its "recovered N keys" and DBSIZE must be the keys
//            loaded, and 3 values are read back: anything else fails the
//            benchmark); then the same backup while a steady load of SETs
//            runs against the node (--load-rate SETs/s on
//            --load-connections connections, each SET timed from when it
//            was due): the load's throughput and p50/p99/max during the
//            backup against the seconds just before it.
//   Redis:   BGSAVE (from the command until INFO says the save is done; the
//            dump.rdb's bytes), `redis-cli --rdb FILE` (wall clock; bytes),
//            and redis-server started over a copy of the dump.rdb until
//            DBSIZE answers every key (and 3 values read back); then BGSAVE
//            and `redis-cli --rdb` each under the same steady load.
//   etcd:    `etcdctl snapshot save FILE` (wall clock; bytes), `etcdctl
//            snapshot restore FILE --data-dir NEW` (wall clock), and etcd
//            started over NEW until its gateway answers (probed every
//            100 ms) and counts every key.
// Reported: medians over rounds, the Piccolo/Redis and Piccolo/etcd ratios;
// the JSON also holds every round and, for each backup under load, the SETs
// answered and their longest time by 100 ms around it.
// Writes bench/results/backup.json, backup.md, backup.svg (seconds) and
// backup-size.svg (MB).
//
//   node dist/bench/backup.js [--rounds 3] [--keys 1000000] [--etcd-keys N]
//     [--load-rate 2000] [--load-connections 8] [--skip-etcd] [--dir /tmp]
//     [--out bench/results]
import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { findEtcd, startEtcd } from "./lib/etcd.js";
import { b64, closeAgents, send } from "./lib/http.js";
import { CLI } from "./lib/piccolo.js";
import { freePort } from "./lib/ports.js";
import { procs, sleep, waitLine } from "./lib/procs.js";
import { barChart, gitCommit, machine, markdownTable, median, progress, progressDone, table } from "./lib/report.js";
import {
  keyValue,
  pipeLoad,
  redisServerArgs,
  requireTools,
  respCommands,
  respInfo,
  startRedis,
  writeSetLoader,
} from "./lib/resp.js";

const BENCH = "bench:backup";
const { values: o } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    keys: { type: "string", default: "1000000" },
    "etcd-keys": { type: "string" },
    "load-rate": { type: "string", default: "2000" },
    "load-connections": { type: "string", default: "8" },
    "skip-etcd": { type: "boolean", default: false },
    dir: { type: "string", default: tmpdir() },
    out: { type: "string", default: "bench/results" },
  },
});
const rounds = Number(o.rounds);
const keys = Number(o.keys);
const etcdKeys = o["etcd-keys"] === undefined ? keys : Number(o["etcd-keys"]);
const loadRate = Number(o["load-rate"]);
const loadConnections = Number(o["load-connections"]);
const outDir = String(o.out);
const command = `node dist/bench/backup.js ${process.argv.slice(2).join(" ")}`.trim();
const commit = gitCommit();
const started = new Date();
const loadAtStart = loadavg()
  .map((x) => x.toFixed(1))
  .join(" ");

requireTools(BENCH, ["redis-server", "redis-cli"]);
const etcd = o["skip-etcd"] ? { version: null, missing: "--skip-etcd" } : findEtcd(BENCH, "etcd");
const P = procs(BENCH, "the servers");
const base = mkdtempSync(join(String(o.dir), "piccolo-bench-backup-"));
P.onCleanup(() => rmSync(base, { recursive: true, force: true }));

// ---------------------------------------------------------------- helpers

/** Runs a command to its end (asynchronously: a load may run meanwhile); its wall clock; throws unless it exits 0. */
function timed(cmd: string, args: string[]): Promise<{ ms: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const c = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    c.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    c.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    c.once("error", reject);
    c.once("exit", (code, signal) => {
      const ms = performance.now() - t0;
      if (code === 0) resolve({ ms, stdout });
      else reject(new Error(`${cmd} ${args.join(" ")}: exit ${code ?? signal}\n${stdout}${stderr}`));
    });
  });
}

const bytesOf = (path: string) => statSync(path).size;

/**
 * Polls DBSIZE every 10 ms until it answers `n` (connection refused and -LOADING are retried); answers
 * ms since `t0`. A server that answers another count for 2 s after its first answer fails the benchmark.
 */
async function waitDbsize(port: number, n: number, t0: number, what: string, limitMs = 600_000): Promise<number> {
  let last = "";
  let firstCount = 0;
  for (;;) {
    try {
      const [size] = await respCommands(port, [["DBSIZE"]], 10_000);
      if (size === `:${n}`) return performance.now() - t0;
      if (/^:\d+$/.test(size ?? "")) {
        firstCount ||= performance.now();
        if (performance.now() - firstCount > 2000)
          throw new Error(`${what} answers DBSIZE ${size!.slice(1)}, not ${n}: keys were lost`);
      }
      last = size ?? "";
    } catch (err) {
      if ((err as Error).message.includes("keys were lost")) throw err;
      last = (err as Error).message;
    }
    if (performance.now() - t0 > limitMs) throw new Error(`${what}: not ${n} keys after ${limitMs} ms (last: ${last})`);
    await sleep(10);
  }
}

/** Reads back 3 keys: each must hold its loaded value. */
async function checkValues(port: number, n: number, what: string): Promise<void> {
  const ids = [0, Math.floor(n / 2), n - 1];
  const got = await respCommands(
    port,
    ids.map((i) => ["GET", keyValue(i).key]),
  );
  ids.forEach((id, j) => {
    if (got[j] !== keyValue(id).value)
      throw new Error(`${what}: ${keyValue(id).key} reads ${JSON.stringify(got[j])}, not its value`);
  });
}

interface PiccoloNode {
  port: number;
  respPort: number;
  child: ChildProcess;
  recovered: number;
  selfMs: number;
  readyMs: number;
}

/** `piccolo server` (its defaults; loopback, free ports) over `dataDir`, until DBSIZE answers `expect` keys. */
async function startPiccolo(name: string, dataDir: string, expect: number): Promise<PiccoloNode> {
  const resp = await freePort(); // --resp-port 0 turns the Redis port off
  const t0 = performance.now();
  const tail: string[] = [];
  const child = P.child(
    name,
    process.execPath,
    [CLI, "server", "--host", "127.0.0.1", "--port", "0", "--resp-port", String(resp), "--data-dir", dataDir],
    tail,
  );
  const m = await waitLine(
    child,
    /recovered (\d+) keys in (\d+) ms[\s\S]*listening on 127\.0\.0\.1:(\d+)[^\n]*resp on 127\.0\.0\.1:(\d+)/,
    name,
    600_000,
  );
  const node = {
    port: Number(m[3]),
    respPort: Number(m[4]),
    child,
    recovered: Number(m[1]),
    selfMs: Number(m[2]),
    readyMs: 0,
  };
  if (node.recovered !== expect)
    throw new Error(`${name}: recovered ${node.recovered} keys, not ${expect}: keys were lost or added`);
  node.readyMs = await waitDbsize(node.respPort, expect, t0, name);
  return node;
}

/** Until Redis runs no AOF rewrite or snapshot (nor has one scheduled). */
async function quiesceRedis(port: number): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    const f = await respInfo(port, "persistence");
    if (f.aof_rewrite_in_progress !== "1" && f.aof_rewrite_scheduled !== "1" && f.rdb_bgsave_in_progress !== "1")
      return;
    await sleep(20);
  }
  throw new Error("redis: a rewrite/snapshot still runs after 120 s");
}

/** The keys under key: in etcd (a count-only range through the gateway). */
async function etcdCount(t: { base: string; prefix: string }): Promise<number> {
  const r = await send(t, {
    method: "POST",
    path: `${t.prefix}/kv/range`,
    body: JSON.stringify({ key: b64("key:"), range_end: b64("key;"), count_only: true }),
    headers: { "content-type": "application/json" },
  });
  if (r.status !== 200) throw new Error(`etcd count: ${r.status} ${r.body}`);
  return Number((JSON.parse(r.body) as { count?: string }).count ?? 0);
}

/** Puts keyValue(0..n-1) into etcd: transactions of 128 puts (etcd's default --max-txn-ops), 16 at a time. */
async function etcdLoad(t: { base: string; prefix: string }, n: number): Promise<void> {
  const per = 128;
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const from = next;
      next += per;
      if (from >= n) return;
      const success = [];
      for (let i = from; i < Math.min(n, from + per); i++) {
        const { key, value } = keyValue(i);
        success.push({ request_put: { key: b64(key), value: b64(value) } });
      }
      const r = await send(t, {
        method: "POST",
        path: `${t.prefix}/kv/txn`,
        body: JSON.stringify({ success }),
        headers: { "content-type": "application/json" },
      });
      if (r.status !== 200) throw new Error(`etcd load: ${r.status} ${r.body.slice(0, 300)}`);
      if (from % 50_000 < per) progress(`etcd: loaded ${from + per} of ${n} keys`);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
}

interface LoadSample {
  at: number;
  ms: number;
}

/**
 * A steady load of SETs (of loaded keys, their own values: the data stays the same) on `connections`
 * connections, `rate` a second in all, each connection one SET at a time at its own pace; every SET is
 * timed from when it was due (a stall delays the next ones and shows in their times). Runs until `stop`
 * resolves.
 */
async function setLoad(
  port: number,
  n: number,
  rate: number,
  connections: number,
  stop: Promise<void>,
): Promise<LoadSample[]> {
  const samples: LoadSample[] = [];
  let stopped = false;
  void stop.then(() => {
    stopped = true;
  });
  const interval = (1000 * connections) / rate;
  const one = async (c: number): Promise<void> => {
    const sock = connect(port, "127.0.0.1");
    await new Promise<void>((r, j) => {
      sock.once("connect", () => r());
      sock.once("error", j);
    });
    let pending: (() => void) | null = null;
    let buf = "";
    sock.on("data", (d: Buffer) => {
      buf += d.toString();
      const eol = buf.indexOf("\r\n");
      if (eol >= 0) {
        if (buf[0] !== "+") throw new Error(`load: SET answered ${buf.slice(0, eol)}`);
        buf = buf.slice(eol + 2);
        pending?.();
      }
    });
    const t0 = performance.now() + (interval * c) / connections;
    for (let k = 0; !stopped; k++) {
      const due = t0 + k * interval;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      const { key, value } = keyValue(Math.floor(Math.random() * n));
      const done = new Promise<void>((r) => {
        pending = r;
      });
      const sent = performance.now(); // a timer may fire a little early: then timed from the send
      sock.write(`*3\r\n$3\r\nSET\r\n$16\r\n${key}\r\n$64\r\n${value}\r\n`);
      await done;
      const at = performance.now();
      samples.push({ at, ms: at - Math.min(due, sent) });
    }
    sock.destroy();
  };
  await Promise.all(Array.from({ length: connections }, (_, c) => one(c)));
  return samples;
}

function window(samples: LoadSample[], from: number, to: number) {
  const ms = samples.filter((s) => s.at >= from && s.at < to).map((s) => s.ms);
  const sorted = [...ms].sort((a, b) => a - b);
  const pct = (p: number) =>
    sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]! : NaN;
  return {
    seconds: (to - from) / 1000,
    sets: ms.length,
    rps: ms.length / ((to - from) / 1000),
    p50ms: pct(0.5),
    p99ms: pct(0.99),
    maxMs: sorted.length ? sorted[sorted.length - 1]! : NaN,
  };
}

interface UnderLoad {
  /** The backup's own time under the load. */
  ms: number;
  before: ReturnType<typeof window>;
  during: ReturnType<typeof window>;
  /** SETs answered and their longest time, by 100 ms from 0.5 s before the backup to 1 s after it (ms since its start). */
  timeline: { atMs: number; sets: number; maxMs: number }[];
}

/** `backup` while setLoad runs against `port`: 3 s of load alone (the first 0.5 s not counted), the backup, 1 s after it. */
async function underLoad(port: number, backup: () => Promise<unknown>): Promise<UnderLoad> {
  let end!: () => void;
  const stop = new Promise<void>((res) => {
    end = res;
  });
  const loading = setLoad(port, keys, loadRate, loadConnections, stop);
  const loadStart = performance.now();
  await sleep(3000);
  const b0 = performance.now();
  await backup();
  const b1 = performance.now();
  await sleep(1000);
  end();
  const samples = await loading;
  const timeline: UnderLoad["timeline"] = [];
  for (let t = b0 - 500; t < b1 + 1000; t += 100) {
    const w = window(samples, t, t + 100);
    timeline.push({
      atMs: Math.round(t - b0),
      sets: w.sets,
      maxMs: Number.isFinite(w.maxMs) ? Math.round(w.maxMs) : 0,
    });
  }
  return { ms: b1 - b0, before: window(samples, loadStart + 500, b0), during: window(samples, b0, b1), timeline };
}

// ---------------------------------------------------------------- contenders

type Name = "piccolo" | "redis" | "etcd";
interface Round {
  round: number;
  order: Name[];
  piccolo?: {
    backupMs: number;
    backupSelfMs: number;
    backupBytes: number;
    restoreMs: number;
    startMs: number;
    startSelfMs: number;
    underLoad: UnderLoad;
  };
  redis?: {
    bgsaveMs: number;
    bgsaveSelfSec: number;
    rdbBytes: number;
    cliRdbMs: number;
    cliRdbBytes: number;
    startMs: number;
    bgsaveUnderLoad: UnderLoad;
    cliRdbUnderLoad: UnderLoad;
  };
  etcd?: { saveMs: number; saveBytes: number; restoreMs: number; startMs: number };
}

progress(`writing ${keys} SETs for redis-cli --pipe`);
const loader = await writeSetLoader(join(base, "load.resp"), keys);
const loads: Record<string, number> = {};

// Piccolo, as `npm start` starts it, over a fresh data directory.
progress(`piccolo: loading ${keys} keys`);
const piccolo = await startPiccolo("piccolo", join(base, "piccolo-data"), 0);
{
  const l = pipeLoad(piccolo.respPort, loader);
  if (l.errors !== 0 || l.replies !== keys) throw new Error(`piccolo load: ${l.errors} errors, ${l.replies} replies`);
  loads.piccolo = l.ms;
  await waitDbsize(piccolo.respPort, keys, performance.now(), "piccolo");
}

// Redis, durable (AOF everysec, as Piccolo's journal).
progress(`redis: loading ${keys} keys`);
const redisDir = join(base, "redis-data");
mkdirSync(redisDir);
const redis = await startRedis({
  procs: P,
  dir: redisDir,
  appendfsync: "everysec",
  args: ["--repl-diskless-sync-delay", "0"],
});
const redisVersion = (await respInfo(redis.port, "server")).redis_version ?? "?";
{
  const l = pipeLoad(redis.port, loader);
  if (l.errors !== 0 || l.replies !== keys) throw new Error(`redis load: ${l.errors} errors, ${l.replies} replies`);
  loads.redis = l.ms;
  await waitDbsize(redis.port, keys, performance.now(), "redis");
}
rmSync(loader, { force: true });

let etcdServer: { base: string; prefix: string } | null = null;
if (etcd.version !== null) {
  progress(`etcd: loading ${etcdKeys} keys`);
  etcdServer = await startEtcd(P, "etcd", etcd.version);
  const t0 = performance.now();
  await etcdLoad(etcdServer, etcdKeys);
  loads.etcd = performance.now() - t0;
  const n = await etcdCount(etcdServer);
  if (n !== etcdKeys) throw new Error(`etcd holds ${n} keys after loading ${etcdKeys}`);
}
progressDone();
console.error(
  `loaded: ${Object.entries(loads)
    .map(([k, ms]) => `${k} ${(ms / 1000).toFixed(1)} s`)
    .join(", ")}`,
);

async function runPiccolo(r: Round): Promise<void> {
  const file = join(base, `piccolo-${r.round}.backup`);
  const server = `127.0.0.1:${piccolo.port}`;
  progress(`round ${r.round}: piccolo backup`);
  const b = await timed(process.execPath, [CLI, "backup", file, "--server", server]);
  const self = /bytes in ([\d.]+) s/.exec(b.stdout);
  const backupBytes = bytesOf(file);
  progress(`round ${r.round}: piccolo restore`);
  const dir = join(base, `piccolo-restored-${r.round}`);
  const rs = await timed(process.execPath, [CLI, "restore", file, "--data-dir", dir]);
  const restored = Number(/restored (\d+) keys/.exec(rs.stdout)?.[1] ?? -1);
  if (restored !== keys) throw new Error(`piccolo restore: restored ${restored} keys, not ${keys}:\n${rs.stdout}`);
  rmSync(file, { force: true });
  progress(`round ${r.round}: piccolo start from the restored directory`);
  const node = await startPiccolo(`piccolo restored (round ${r.round})`, dir, keys);
  await checkValues(node.respPort, keys, "piccolo restored");
  await P.stop(node.child);
  rmSync(dir, { recursive: true, force: true });

  progress(`round ${r.round}: piccolo backup under ${loadRate} SETs/s`);
  const lfile = join(base, `piccolo-${r.round}-load.backup`);
  const loaded = await underLoad(piccolo.respPort, () =>
    timed(process.execPath, [CLI, "backup", lfile, "--server", server]),
  );
  rmSync(lfile, { force: true });
  r.piccolo = {
    backupMs: b.ms,
    backupSelfMs: self ? Number(self[1]) * 1000 : Number.NaN,
    backupBytes,
    restoreMs: rs.ms,
    startMs: node.readyMs,
    startSelfMs: node.selfMs,
    underLoad: loaded,
  };
  await waitDbsize(piccolo.respPort, keys, performance.now(), "piccolo after the load");
}

/** BGSAVE, from the command until INFO says it is done (polled every 10 ms); and Redis's own seconds. */
async function bgsave(): Promise<{ ms: number; selfSec: number }> {
  await quiesceRedis(redis.port);
  const before = await respInfo(redis.port, "persistence");
  const t0 = performance.now();
  const [answer] = await respCommands(redis.port, [["BGSAVE"]]);
  if (!answer?.startsWith("+")) throw new Error(`redis BGSAVE: ${answer}`);
  let f = before;
  for (;;) {
    f = await respInfo(redis.port, "persistence");
    const counted = f.rdb_saves !== undefined ? f.rdb_saves !== before.rdb_saves : true;
    if (f.rdb_bgsave_in_progress === "0" && f.rdb_last_save_time !== before.rdb_last_save_time && counted) break;
    if (performance.now() - t0 > 600_000) throw new Error("redis BGSAVE: not done after 600 s");
    await sleep(10);
  }
  const ms = performance.now() - t0;
  if (f.rdb_last_bgsave_status !== "ok") throw new Error(`redis BGSAVE: ${f.rdb_last_bgsave_status}`);
  return { ms, selfSec: Number(f.rdb_last_bgsave_time_sec) };
}

async function runRedis(r: Round): Promise<void> {
  progress(`round ${r.round}: redis BGSAVE`);
  const bg = await bgsave();
  const rdb = join(redisDir, "dump.rdb");
  const rdbBytes = bytesOf(rdb);

  progress(`round ${r.round}: redis-cli --rdb`);
  const cliFile = join(base, `redis-${r.round}.rdb`);
  const c = await timed("redis-cli", ["-h", "127.0.0.1", "-p", String(redis.port), "--rdb", cliFile]);
  const cliRdbBytes = bytesOf(cliFile);
  rmSync(cliFile, { force: true });

  progress(`round ${r.round}: redis start from the dump.rdb`);
  const dir = join(base, `redis-restored-${r.round}`);
  mkdirSync(dir);
  copyFileSync(rdb, join(dir, "dump.rdb"));
  const port = await freePort();
  const s0 = performance.now();
  const child = P.child(`redis restored (round ${r.round})`, "redis-server", redisServerArgs({ port, dir }));
  child.stdout!.resume();
  const startMs = await waitDbsize(port, keys, s0, "redis restored");
  await checkValues(port, keys, "redis restored");
  await P.stop(child);
  rmSync(dir, { recursive: true, force: true });

  progress(`round ${r.round}: redis BGSAVE and redis-cli --rdb under ${loadRate} SETs/s`);
  const bgsaveUnderLoad = await underLoad(redis.port, bgsave);
  await quiesceRedis(redis.port);
  const cliRdbUnderLoad = await underLoad(redis.port, () =>
    timed("redis-cli", ["-h", "127.0.0.1", "-p", String(redis.port), "--rdb", cliFile]),
  );
  rmSync(cliFile, { force: true });
  r.redis = {
    bgsaveMs: bg.ms,
    bgsaveSelfSec: bg.selfSec,
    rdbBytes,
    cliRdbMs: c.ms,
    cliRdbBytes,
    startMs,
    bgsaveUnderLoad,
    cliRdbUnderLoad,
  };
}

async function runEtcd(r: Round): Promise<void> {
  if (!etcdServer || etcd.version === null) return;
  progress(`round ${r.round}: etcdctl snapshot save`);
  const file = join(base, `etcd-${r.round}.db`);
  const s = await timed("etcdctl", ["--endpoints", etcdServer.base, "snapshot", "save", file]);
  const saveBytes = bytesOf(file);
  progress(`round ${r.round}: etcdctl snapshot restore`);
  const dir = join(base, `etcd-restored-${r.round}`);
  const peer = `http://127.0.0.1:${await freePort()}`;
  const rs = await timed("etcdctl", [
    "snapshot",
    "restore",
    file,
    "--data-dir",
    dir,
    "--name",
    "bench",
    "--initial-cluster",
    `bench=${peer}`,
    "--initial-advertise-peer-urls",
    peer,
  ]);
  rmSync(file, { force: true });
  progress(`round ${r.round}: etcd start from the restored directory`);
  const s0 = performance.now();
  const restored = await startEtcd(P, "etcd", etcd.version, undefined, { dataDir: dir });
  const n = await etcdCount(restored);
  const startMs = performance.now() - s0;
  if (n !== etcdKeys) throw new Error(`etcd restored: ${n} keys, not ${etcdKeys}`);
  closeAgents();
  await P.stop(restored.child);
  rmSync(dir, { recursive: true, force: true });
  r.etcd = { saveMs: s.ms, saveBytes, restoreMs: rs.ms, startMs };
}

const run: Record<Name, (r: Round) => Promise<void>> = { piccolo: runPiccolo, redis: runRedis, etcd: runEtcd };
const results: Round[] = [];
const t0 = performance.now();
for (let round = 1; round <= rounds; round++) {
  const names: Name[] = etcdServer ? ["piccolo", "redis", "etcd"] : ["piccolo", "redis"];
  const order = round % 2 === 1 ? names : [...names].reverse();
  const r: Round = { round, order };
  for (const name of order) await run[name](r);
  results.push(r);
}
progressDone();
const seconds = (performance.now() - t0) / 1000;
const loadAtEnd = loadavg()
  .map((x) => x.toFixed(1))
  .join(" ");
const leftovers = readdirSync(base).filter((e) => e.endsWith(".partial"));

// ------------------------------------------------------------------- report

const med = (f: (r: Round) => number | undefined) => {
  const xs = results.map(f).filter((x): x is number => x !== undefined && Number.isFinite(x));
  return xs.length ? median(xs) : Number.NaN;
};
const s = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : "-");
const mb = (b: number) => (Number.isFinite(b) ? (b / 1e6).toFixed(1) : "-");
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : "-");

const m = {
  pBackup: med((r) => r.piccolo?.backupMs),
  pBackupSelf: med((r) => r.piccolo?.backupSelfMs),
  pBytes: med((r) => r.piccolo?.backupBytes),
  pRestore: med((r) => r.piccolo?.restoreMs),
  pStart: med((r) => r.piccolo?.startMs),
  pStartSelf: med((r) => r.piccolo?.startSelfMs),
  rBgsave: med((r) => r.redis?.bgsaveMs),
  rBytes: med((r) => r.redis?.rdbBytes),
  rCli: med((r) => r.redis?.cliRdbMs),
  rCliBytes: med((r) => r.redis?.cliRdbBytes),
  rStart: med((r) => r.redis?.startMs),
  eSave: med((r) => r.etcd?.saveMs),
  eBytes: med((r) => r.etcd?.saveBytes),
  eRestore: med((r) => r.etcd?.restoreMs),
  eStart: med((r) => r.etcd?.startMs),
};
const etcdNote = etcdKeys === keys ? "" : ` (${etcdKeys} keys)`;
const header = ["", "Piccolo", "Redis BGSAVE", "Redis --rdb", `etcd${etcdNote}`, "P/Redis", "P/etcd"];
const rows: (string | number)[][] = [
  [
    "backup, s",
    s(m.pBackup),
    s(m.rBgsave),
    s(m.rCli),
    s(m.eSave),
    `${ratio(m.pBackup, m.rBgsave)} / ${ratio(m.pBackup, m.rCli)}`,
    ratio(m.pBackup, m.eSave),
  ],
  [
    "file, MB",
    mb(m.pBytes),
    mb(m.rBytes),
    mb(m.rCliBytes),
    mb(m.eBytes),
    ratio(m.pBytes, m.rBytes),
    ratio(m.pBytes, m.eBytes),
  ],
  ["restore, s", s(m.pRestore), "(copy)", "(copy)", s(m.eRestore), "-", ratio(m.pRestore, m.eRestore)],
  [
    "start until every key, s",
    s(m.pStart),
    s(m.rStart),
    s(m.rStart),
    s(m.eStart),
    ratio(m.pStart, m.rStart),
    ratio(m.pStart, m.eStart),
  ],
  [
    "restore + start, s",
    s(m.pRestore + m.pStart),
    s(m.rStart),
    s(m.rStart),
    s(m.eRestore + m.eStart),
    ratio(m.pRestore + m.pStart, m.rStart),
    ratio(m.pRestore + m.pStart, m.eRestore + m.eStart),
  ],
];
const roundHeader = [
  "round",
  "order",
  "P backup",
  "P restore",
  "P start",
  "BGSAVE",
  "--rdb",
  "R start",
  "etcd save",
  "etcd restore",
  "etcd start",
];
const roundRows = results.map((r) => [
  r.round,
  r.order.join(" "),
  s(r.piccolo?.backupMs ?? NaN),
  s(r.piccolo?.restoreMs ?? NaN),
  s(r.piccolo?.startMs ?? NaN),
  s(r.redis?.bgsaveMs ?? NaN),
  s(r.redis?.cliRdbMs ?? NaN),
  s(r.redis?.startMs ?? NaN),
  s(r.etcd?.saveMs ?? NaN),
  s(r.etcd?.restoreMs ?? NaN),
  s(r.etcd?.startMs ?? NaN),
]);
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "-");
const loaded: [string, (r: Round) => UnderLoad | undefined, (r: Round) => number | undefined][] = [
  ["piccolo backup", (r) => r.piccolo?.underLoad, (r) => r.piccolo?.backupMs],
  ["redis BGSAVE", (r) => r.redis?.bgsaveUnderLoad, (r) => r.redis?.bgsaveMs],
  ["redis-cli --rdb", (r) => r.redis?.cliRdbUnderLoad, (r) => r.redis?.cliRdbMs],
];
const loadHeader = [
  "backup",
  "s alone / under load",
  "SETs/s before / during",
  "p50 ms before / during",
  "p99 ms before / during",
  "max ms during",
  "p99 ms during, by round",
];
const ul: Record<string, Record<string, number>> = {};
const loadRows = loaded.map(([name, u, alone]) => {
  const x = {
    aloneMs: med(alone),
    ms: med((r) => u(r)?.ms),
    beforeRps: med((r) => u(r)?.before.rps),
    duringRps: med((r) => u(r)?.during.rps),
    beforeP50: med((r) => u(r)?.before.p50ms),
    duringP50: med((r) => u(r)?.during.p50ms),
    beforeP99: med((r) => u(r)?.before.p99ms),
    duringP99: med((r) => u(r)?.during.p99ms),
    duringMax: med((r) => u(r)?.during.maxMs),
  };
  ul[name] = x;
  return [
    name,
    `${s(x.aloneMs)} / ${s(x.ms)}`,
    `${Math.round(x.beforeRps)} / ${Math.round(x.duringRps)}`,
    `${f2(x.beforeP50)} / ${f2(x.duringP50)}`,
    `${f2(x.beforeP99)} / ${f2(x.duringP99)}`,
    f2(x.duringMax),
    results.map((r) => f2(u(r)?.during.p99ms ?? Number.NaN)).join(" "),
  ];
});

const setup =
  `${keys} keys (16-byte keys, 64-byte values${etcdKeys === keys ? "" : `; etcd ${etcdKeys} keys`}), median of ${rounds} rounds` +
  `, order reversed every round. Piccolo: \`piccolo server\` defaults (durable, fsync everysec, one shard worker per core); ` +
  `Redis ${redisVersion}: AOF everysec, --save "", --repl-diskless-sync-delay 0; etcd ${etcd.version ?? "(not run)"}: one member, defaults`;
const notes = [
  "`piccolo backup`, `redis-cli --rdb` and `etcdctl snapshot save` stream the data over TCP to a file the client writes (each CLI's wall clock, process start included); BGSAVE forks and writes dump.rdb on the server's own disk (timed from the command until INFO says it is done, polled every 10 ms).",
  "`piccolo backup` fsyncs its file and then reads it back whole to check every record and the SHA-256 before it renames it into place; `redis-cli --rdb` and `etcdctl snapshot save` (which checks the snapshot's hash) are timed as they come.",
  "Restore: `piccolo restore` checks the file again and writes a data directory (a snapshot per shard); Redis restores by copying dump.rdb into a data directory (not timed); `etcdctl snapshot restore` writes a member's data directory.",
  "Start: from spawn until DBSIZE answers every key (Piccolo, Redis: polled every 10 ms; etcd: its gateway probed every 100 ms, then a count-only range).",
  `Under load: ${loadRate} SETs/s of loaded keys (their own values) on ${loadConnections} connections, each SET timed from when it was due (a stall shows in the SETs queued behind it); "before" is the 2.5 s of load just before the backup, "during" from its start to its end (the CLI's wall clock; BGSAVE until INFO says done); medians over rounds. The load runs in the benchmark's own process and the backup's client on the same 2 cores as the server.`,
  `Load average ${loadAtStart} at the start, ${loadAtEnd} at the end.`,
];

console.log(`\n${setup}\n`);
console.log(table(header, rows));
console.log(`\nper round (s):\n\n${table(roundHeader, roundRows)}`);
console.log(`\nbackups under a steady load of ${loadRate} SETs/s (medians):\n\n${table(loadHeader, loadRows)}`);
console.log(
  `\nload: ${Object.entries(loads)
    .map(([k, ms]) => `${k} ${(ms / 1000).toFixed(1)} s`)
    .join(", ")}`,
);
if (leftovers.length) console.log(`\nleft behind: ${leftovers.join(" ")}`);

mkdirSync(outDir, { recursive: true });
writeFileSync(
  join(outDir, "backup.json"),
  `${JSON.stringify(
    {
      machine: machine(),
      commit,
      command,
      started: started.toISOString(),
      seconds,
      loadAverageAtStart: loadAtStart,
      loadAverageAtEnd: loadAtEnd,
      redis: redisVersion,
      etcd: etcd.version,
      etcdMissing: etcd.missing,
      options: { rounds, keys, etcdKeys, loadRate, loadConnections },
      loadMs: loads,
      medians: m,
      underLoad: ul,
      rounds: results,
    },
    null,
    2,
  )}\n`,
);
const bar = (group: string, series: string, value: number) => ({ group, series, value });
const timeBars = [
  bar("backup", "piccolo", m.pBackup),
  bar("backup", "redis BGSAVE", m.rBgsave),
  bar("backup", "redis-cli --rdb", m.rCli),
  bar("backup", "etcd", m.eSave),
  bar("restore + start", "piccolo", m.pRestore + m.pStart),
  bar("restore + start", "redis BGSAVE", m.rStart),
  bar("restore + start", "etcd", m.eRestore + m.eStart),
].filter((b) => Number.isFinite(b.value));
writeFileSync(
  join(outDir, "backup.svg"),
  barChart(`Backup and restore of ${keys / 1e6}M keys (median ms; lower is better)`, "ms", timeBars),
);
writeFileSync(
  join(outDir, "backup-size.svg"),
  barChart(
    `Backup file of ${keys / 1e6}M keys (MB)`,
    "MB",
    [
      bar("file", "piccolo", m.pBytes / 1e6),
      bar("file", "redis dump.rdb", m.rBytes / 1e6),
      bar("file", "redis-cli --rdb", m.rCliBytes / 1e6),
      bar("file", "etcd", m.eBytes / 1e6),
    ].filter((b) => Number.isFinite(b.value)),
  ),
);
writeFileSync(
  join(outDir, "backup.md"),
  [
    "# bench:backup: backup and restore of 1M keys, Piccolo against Redis and etcd",
    "",
    `\`${command}\` (after \`npm run build\`; \`npm run bench:backup\` runs the defaults), ${started.toISOString()}, ` +
      `commit ${commit}; ${machine().cpu}, ${machine().cores} cores, Node ${process.version}; ${seconds.toFixed(0)} s.`,
    "",
    `${setup}.`,
    "",
    markdownTable(header, rows),
    "",
    "Per round (seconds):",
    "",
    markdownTable(roundHeader, roundRows),
    "",
    `Backups under a steady load of ${loadRate} SETs/s (medians over rounds):`,
    "",
    markdownTable(loadHeader, loadRows),
    "",
    `Loading the keys: ${Object.entries(loads)
      .map(([k, ms]) => `${k} ${(ms / 1000).toFixed(1)} s`)
      .join(", ")}.`,
    "",
    "![seconds](backup.svg) ![MB](backup-size.svg)",
    "",
    "Notes:",
    "",
    ...notes.map((x) => `- ${x}`),
    "",
  ].join("\n"),
);
console.log(
  `\nwrote ${join(outDir, "backup.json")}, backup.md, backup.svg and backup-size.svg (${seconds.toFixed(0)} s)`,
);
P.cleanup();
process.exit(0);
