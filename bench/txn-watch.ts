// npm run bench:txn-watch: transactions and watches, Piccolo beside Redis and
// etcd, side by side in one run, contenders alternated round by round.
//
//   1. Transfers: C clients (default 16) each move 1 between two random
//      accounts of N (default 1,000): read both balances with their versions,
//      then a compare-and-swap transaction on both; a conflict retries the
//      same transfer. Piccolo native (mget + txn with version compares, one
//      node, default shards, so about half the transfers cross shards),
//      Piccolo's Redis port and Redis (WATCH, MGET, MULTI, SET, SET, EXEC
//      with ioredis), etcd (a read-only Txn of two ranges, then a Txn with
//      version compares). Transfers/s, conflicts per attempt, p50/p99 of a
//      transfer (first read to commit, retries included). After every round
//      the balances are summed: the total must not change.
//   2. Watch fan-out: 1, 100 and 1,000 watchers of one prefix while one
//      writer puts new keys at a steady rate (offered deliveries/s is
//      --events-per-sec, the put rate is that over the watcher count, at
//      most --max-put-rate). Deliveries/s, lost events, and the delivery
//      latency: put acknowledged -> event received (p50/p99; an event that
//      arrives before the put's answer counts as 0). Piccolo native watch
//      (100 watchers per connection), etcd Watch (etcd3, 100 watchers per
//      client), Redis keyspace notifications (notify-keyspace-events KA,
//      PSUBSCRIBE __keyspace@0__:prefix*, one connection per watcher, as a
//      subscription is per connection).
//   3. Idle watchers: a fresh Piccolo node (and etcd), RSS before and after
//      opening 1,000 and 10,000 idle prefix watchers (250 per connection),
//      and the server's CPU use while they sit idle.
//   4. Transfers on 3-member clusters: Piccolo (PiccoloClusterClient, each
//      transaction to its partition's leader) and etcd, both durable on disk;
//      accounts in groups of 10 sharing a hash tag, transfers within a group
//      (a cluster's transaction must stay in one partition); reads are two
//      linearizable gets for Piccolo, a read-only Txn for etcd.
//
// Piccolo runs in memory (--in-memory) and Redis without persistence; etcd
// cannot run without its WAL, so its data dir is on /dev/shm (tmpfs: its
// fsyncs cost nothing) when that exists. Every load generator runs in this
// one Node process, on the same cores as the servers.
//
// etcd is Debian's etcd-server (apt-get install -y etcd-server); its client
// is the npm package etcd3 (a devDependency), loaded at run time. Without
// etcd the etcd rows are left out and the run says so. Writes bench/results/txn-watch.json, txn-watch.svg
// (transfers/s) and txn-watch-fanout.svg (delivery latency).
//
//   node dist/bench/txn-watch.js [--quick] [--rounds 3] [--seconds 10]
//     [--clients 16] [--accounts 1000] [--watchers 1,100,1000]
//     [--watch-seconds 5] [--events-per-sec 10000] [--max-put-rate 500]
//     [--idle 1000,10000] [--only txn,watch,idle,cluster] [--replot]
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import * as hdr from "hdr-histogram-js";
import { Redis } from "ioredis";
import { PiccoloClient, type Watcher } from "../src/client/client.js";
import { PiccoloClusterClient } from "../src/client/cluster-client.js";
import { freePort } from "./lib/ports.js";
import { barChart, machine, median, progress, progressDone, table } from "./lib/report.js";

const { values: o } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    rounds: { type: "string" },
    seconds: { type: "string" },
    clients: { type: "string", default: "16" },
    accounts: { type: "string", default: "1000" },
    watchers: { type: "string", default: "1,100,1000" },
    "watch-seconds": { type: "string" },
    "events-per-sec": { type: "string", default: "10000" },
    "max-put-rate": { type: "string", default: "500" },
    idle: { type: "string" },
    only: { type: "string", default: "txn,watch,idle,cluster" },
    replot: { type: "boolean", default: false },
    out: { type: "string", default: "bench/results" },
  },
});
const quick = o.quick === true;
const opts = {
  rounds: Number(o.rounds ?? (quick ? 1 : 3)),
  seconds: Number(o.seconds ?? (quick ? 3 : 10)),
  warmupMs: quick ? 500 : 2000,
  clients: Number(o.clients),
  accounts: Number(o.accounts),
  watchers: String(o.watchers).split(",").map(Number),
  watchSeconds: Number(o["watch-seconds"] ?? (quick ? 2 : 5)),
  eventsPerSec: Number(o["events-per-sec"]),
  maxPutRate: Number(o["max-put-rate"]),
  idle: String(o.idle ?? (quick ? "1000" : "1000,10000"))
    .split(",")
    .map(Number),
  only: new Set(String(o.only).split(",")),
  out: String(o.out),
};

const CLI = new URL("../src/cli/main.js", import.meta.url).pathname;
const INITIAL_BALANCE = 1000;
const children = new Set<ChildProcess>();
const cleanups: (() => void)[] = [];

// ---- etcd and its client, both optional ------------------------------------

interface EtcdKv {
  key: Buffer;
  value: Buffer;
  version: string;
  mod_revision: string;
}
interface EtcdWatcher {
  on(event: "put", handler: (kv: EtcdKv) => void): EtcdWatcher;
  cancel(): Promise<void>;
}
interface EtcdClient {
  kv: {
    txn(req: unknown): Promise<{ succeeded: boolean; responses: { response_range?: { kvs: EtcdKv[] } }[] }>;
    put(req: { key: Buffer; value: Buffer }): Promise<unknown>;
  };
  watch(): { prefix(p: string): { create(): Promise<EtcdWatcher> } };
  close(): void;
}
type EtcdCtor = new (options: { hosts: string | string[] }) => EtcdClient;

let Etcd3: EtcdCtor | null = null;
let etcdMissing = "";
const etcdVersion = spawnSync("etcd", ["--version"], { encoding: "utf8" });
if (etcdVersion.status !== 0) etcdMissing = "etcd is not installed (apt-get install -y etcd-server)";
else {
  try {
    Etcd3 = (createRequire(import.meta.url)("etcd3") as { Etcd3: EtcdCtor }).Etcd3;
  } catch {
    etcdMissing = "the npm package etcd3 is not installed (npm install --no-save etcd3)";
  }
}
if (etcdMissing !== "") console.error(`etcd is left out: ${etcdMissing}`);
for (const tool of ["redis-server", "redis-cli"]) {
  if (spawnSync(tool, ["--version"]).status !== 0) {
    console.error(`bench:txn-watch needs ${tool}: apt-get install -y redis-server redis-tools (nothing was installed)`);
    process.exit(2);
  }
}

// ---- servers ---------------------------------------------------------------

interface Server {
  child: ChildProcess;
  port: number;
  respPort: number;
  url: string;
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

async function stop(s: Server): Promise<void> {
  if (s.child.exitCode !== null) return;
  s.child.kill("SIGTERM");
  await new Promise((r) => s.child.once("exit", r));
}

async function startPiccolo(): Promise<Server> {
  const port = await freePort();
  const respPort = await freePort();
  const args = ["server", "--host", "127.0.0.1", "--port", String(port), "--resp-port", String(respPort)];
  const child = track(spawn(process.execPath, [CLI, ...args, "--in-memory"], { stdio: "ignore" }));
  for (let i = 0; i < 100; i++) {
    try {
      const c = await PiccoloClient.connect({ port, timeoutMs: 1000 });
      await c.ping();
      await c.close();
      return { child, port, respPort, url: "" };
    } catch {
      await sleep(100);
    }
  }
  throw new Error("piccolo did not start");
}

async function startRedis(): Promise<Server> {
  const port = await freePort();
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
  const child = track(spawn("redis-server", args, { stdio: "ignore" }));
  for (let i = 0; i < 100; i++) {
    const r = spawnSync("redis-cli", ["-p", String(port), "ping"], { encoding: "utf8" });
    if (r.stdout?.includes("PONG")) return { child, port, respPort: port, url: "" };
    await sleep(100);
  }
  throw new Error("redis did not start");
}

async function startEtcd(): Promise<Server> {
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const dir = mkdtempSync(join(base, "piccolo-bench-etcd-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const peer = `http://127.0.0.1:${await freePort()}`;
  const url = `http://127.0.0.1:${port}`;
  const child = track(
    spawn(
      "etcd",
      [
        "--name=b",
        `--data-dir=${dir}`,
        `--listen-client-urls=${url}`,
        `--advertise-client-urls=${url}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=b=${peer}`,
        "--logger=zap",
        "--log-level=error",
      ],
      { stdio: ["ignore", "ignore", "inherit"] },
    ),
  );
  const c = new Etcd3!({ hosts: url });
  try {
    for (let i = 0; i < 100; i++) {
      try {
        await c.kv.put({ key: Buffer.from("probe"), value: Buffer.from("x") });
        return { child, port, respPort: 0, url };
      } catch {
        await sleep(100);
      }
    }
  } finally {
    c.close();
  }
  throw new Error("etcd did not start");
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) * 1024;
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ
}

// ---- 1. transfers ----------------------------------------------------------

const account = (i: number) => `acct:${String(i).padStart(5, "0")}`;

/** One contender's side of the transfer workload, on one connection. */
interface Transferer {
  /** One attempt: read a and b, then the compare-and-swap; false on a conflict. */
  attempt(a: string, b: string): Promise<boolean>;
  close(): Promise<void>;
}

interface TxnContender {
  name: string;
  connect(): Promise<Transferer>;
  /** Sets every account to INITIAL_BALANCE. */
  load(): Promise<void>;
  /** The sum of every balance. */
  total(): Promise<number>;
  /** Account i's key (default account(i)). */
  key?: (i: number) => string;
  /** Transfers stay within groups of 10 accounts (a cluster's transaction must stay in one partition). */
  grouped?: boolean;
}

/** In a cluster: accounts in groups of 10 sharing a hash tag, so each group is in one partition. */
const groupedAccount = (i: number) => `{g${Math.floor(i / 10)}}${account(i)}`;

function piccoloNative(s: Server): TxnContender {
  const keys = Array.from({ length: opts.accounts }, (_, i) => account(i));
  return {
    name: "piccolo native txn",
    async connect() {
      const c = await PiccoloClient.connect({ port: s.port, timeoutMs: 30_000 });
      return {
        async attempt(a, b) {
          const [ea, eb] = await c.mget([a, b]);
          return moveOne(c, a, b, ea!, eb!);
        },
        close: () => c.close(),
      };
    },
    async load() {
      const c = await PiccoloClient.connect({ port: s.port });
      for (let i = 0; i < keys.length; i += 500)
        await c.mput(keys.slice(i, i + 500).map((k) => [k, String(INITIAL_BALANCE)]));
      await c.close();
    },
    async total() {
      const c = await PiccoloClient.connect({ port: s.port });
      const es = await c.mget(keys);
      await c.close();
      return es.reduce((sum, e) => sum + Number(e!.value), 0);
    },
  };
}

function redisLike(name: string, port: number): TxnContender {
  const keys = Array.from({ length: opts.accounts }, (_, i) => account(i));
  return {
    name,
    async connect() {
      const r = new Redis({ port, host: "127.0.0.1", maxRetriesPerRequest: 0 });
      return {
        async attempt(a, b) {
          await r.watch(a, b);
          const [va, vb] = await r.mget(a, b);
          const res = await r
            .multi()
            .set(a, String(Number(va) - 1))
            .set(b, String(Number(vb) + 1))
            .exec();
          if (res === null) return false;
          for (const [err] of res) if (err) throw err;
          return true;
        },
        close: async () => {
          r.disconnect();
        },
      };
    },
    async load() {
      const r = new Redis({ port, host: "127.0.0.1" });
      for (let i = 0; i < keys.length; i += 500)
        await r.mset(...keys.slice(i, i + 500).flatMap((k) => [k, String(INITIAL_BALANCE)]));
      r.disconnect();
    },
    async total() {
      const r = new Redis({ port, host: "127.0.0.1" });
      const vs = await r.mget(...keys);
      r.disconnect();
      return vs.reduce((sum, v) => sum + Number(v), 0);
    },
  };
}

function etcdTxn(s: Server, name = "etcd txn", key = account): TxnContender {
  const keys = Array.from({ length: opts.accounts }, (_, i) => Buffer.from(key(i)));
  // One client (one gRPC channel, HTTP/2 streams multiplexed), as etcd's clients are used.
  let shared: EtcdClient | null = null;
  let users = 0;
  const client = () => {
    shared ??= new Etcd3!({ hosts: s.url.split(",") });
    users++;
    return shared;
  };
  const release = () => {
    if (--users === 0 && shared !== null) {
      shared.close();
      shared = null;
    }
  };
  return {
    name,
    key,
    grouped: key !== account,
    async connect() {
      const c = client();
      return {
        async attempt(a, b) {
          const ka = Buffer.from(a);
          const kb = Buffer.from(b);
          const read = await c.kv.txn({ success: [{ request_range: { key: ka } }, { request_range: { key: kb } }] });
          const ea = read.responses[0]!.response_range!.kvs[0]!;
          const eb = read.responses[1]!.response_range!.kvs[0]!;
          const r = await c.kv.txn({
            compare: [
              { key: ka, target: "Version", result: "Equal", version: ea.version },
              { key: kb, target: "Version", result: "Equal", version: eb.version },
            ],
            success: [
              { request_put: { key: ka, value: Buffer.from(String(Number(ea.value.toString()) - 1)) } },
              { request_put: { key: kb, value: Buffer.from(String(Number(eb.value.toString()) + 1)) } },
            ],
          });
          return r.succeeded;
        },
        close: async () => release(),
      };
    },
    async load() {
      const c = client();
      for (let i = 0; i < keys.length; i += 100)
        await c.kv.txn({
          success: keys
            .slice(i, i + 100)
            .map((key) => ({ request_put: { key, value: Buffer.from(String(INITIAL_BALANCE)) } })),
        });
      release();
    },
    async total() {
      const c = client();
      let sum = 0;
      for (let i = 0; i < keys.length; i += 100) {
        const r = await c.kv.txn({ success: keys.slice(i, i + 100).map((key) => ({ request_range: { key } })) });
        for (const op of r.responses) sum += Number(op.response_range!.kvs[0]!.value.toString());
      }
      release();
      return sum;
    },
  };
}

/** A 3-member cluster through PiccoloClusterClient: each transaction goes to its partition's leader. */
function piccoloCluster(members: string[]): TxnContender {
  const keys = Array.from({ length: opts.accounts }, (_, i) => groupedAccount(i));
  const connect = () => PiccoloClusterClient.connect({ members, timeoutMs: 30_000 });
  return {
    name: "piccolo cluster txn",
    key: groupedAccount,
    grouped: true,
    async connect() {
      const c = await connect();
      return {
        async attempt(a, b) {
          // Two linearizable reads (ReadIndex on the leader), then the transaction: one Raft entry.
          const [ea, eb] = await Promise.all([c.get(a), c.get(b)]);
          return moveOne(c, a, b, ea!, eb!);
        },
        close: () => c.close(),
      };
    },
    async load() {
      const c = await connect();
      for (const k of keys) await c.put(k, String(INITIAL_BALANCE));
      await c.close();
    },
    async total() {
      const c = await connect();
      let sum = 0;
      for (let i = 0; i < keys.length; i += 50)
        sum += (await Promise.all(keys.slice(i, i + 50).map((k) => c.get(k)))).reduce(
          (s, e) => s + Number(e!.value),
          0,
        );
      await c.close();
      return sum;
    },
  };
}

async function startPiccoloCluster(root: string): Promise<{ members: string[]; children: ChildProcess[] }> {
  const peers = [await freePort(), await freePort(), await freePort()];
  const list = peers.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(",");
  const ports = [await freePort(), await freePort(), await freePort()];
  const kids = ports.map((port, i) =>
    track(
      spawn(
        process.execPath,
        [CLI, "server", "--host", "127.0.0.1", "--port", String(port), "--resp-port", "0"].concat([
          "--node-id",
          `n${i + 1}`,
          "--cluster",
          list,
          "--data-dir",
          join(root, `p${i + 1}`),
        ]),
        { stdio: "ignore" },
      ),
    ),
  );
  const members = ports.map((p) => `127.0.0.1:${p}`);
  // Up once a write through a cluster client goes through (every partition has a leader by then, or soon).
  for (let i = 0; i < 300; i++) {
    try {
      const c = await PiccoloClusterClient.connect({ members, timeoutMs: 2000 });
      try {
        for (let g = 0; g < opts.accounts / 10; g++) await c.put(`{g${g}}probe`, "x");
        return { members, children: kids };
      } finally {
        await c.close();
      }
    } catch {
      await sleep(200);
    }
  }
  throw new Error("the piccolo cluster did not start");
}

async function startEtcdCluster(root: string): Promise<{ url: string; children: ChildProcess[] }> {
  const ms = [];
  for (let i = 0; i < 3; i++)
    ms.push({
      name: `e${i + 1}`,
      client: `http://127.0.0.1:${await freePort()}`,
      peer: `http://127.0.0.1:${await freePort()}`,
    });
  const initial = ms.map((m) => `${m.name}=${m.peer}`).join(",");
  const kids = ms.map((m) =>
    track(
      spawn(
        "etcd",
        [
          `--name=${m.name}`,
          `--data-dir=${join(root, m.name)}`,
          `--listen-client-urls=${m.client}`,
          `--advertise-client-urls=${m.client}`,
          `--listen-peer-urls=${m.peer}`,
          `--initial-advertise-peer-urls=${m.peer}`,
          `--initial-cluster=${initial}`,
          "--initial-cluster-token=piccolo-bench",
          "--logger=zap",
          "--log-level=error",
        ],
        { stdio: ["ignore", "ignore", "inherit"] },
      ),
    ),
  );
  const url = ms.map((m) => m.client).join(",");
  const c = new Etcd3!({ hosts: url.split(",") });
  try {
    for (let i = 0; i < 300; i++) {
      try {
        await c.kv.put({ key: Buffer.from("probe"), value: Buffer.from("x") });
        return { url, children: kids };
      } catch {
        await sleep(200);
      }
    }
  } finally {
    c.close();
  }
  throw new Error("the etcd cluster did not start");
}

interface TxnCell {
  contender: string;
  round: number;
  transfersPerSec: number;
  attempts: number;
  conflicts: number;
  conflictRate: number;
  p50ms: number;
  p99ms: number;
  errors: number;
  total: number;
  totalOk: boolean;
}

async function runTransfers(t: TxnContender, round: number): Promise<TxnCell> {
  const conns = await Promise.all(Array.from({ length: opts.clients }, () => t.connect()));
  const hist = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
  let recording = false;
  let committed = 0;
  let attempts = 0;
  let conflicts = 0;
  let errors = 0;
  let stopping = false;
  let firstError: unknown = null;
  const loops = conns.map(async (c) => {
    while (!stopping) {
      const span = t.grouped ? 10 : opts.accounts;
      const base = t.grouped ? 10 * Math.floor(Math.random() * (opts.accounts / 10)) : 0;
      const a = Math.floor(Math.random() * span);
      let b = Math.floor(Math.random() * (span - 1));
      if (b >= a) b++;
      const key = t.key ?? account;
      const t0 = performance.now();
      let rec = recording;
      for (;;) {
        try {
          const ok = await c.attempt(key(base + a), key(base + b));
          if (recording) attempts++;
          else rec = false;
          if (ok) break;
          if (recording) conflicts++;
        } catch (e) {
          errors++;
          firstError ??= e;
          await sleep(10);
        }
        if (stopping) {
          rec = false;
          break;
        }
      }
      if (rec && recording) {
        committed++;
        hist.recordValue(Math.round((performance.now() - t0) * 1000));
      }
    }
  });
  await sleep(opts.warmupMs);
  recording = true;
  const start = performance.now();
  await sleep(opts.seconds * 1000);
  recording = false;
  const elapsed = (performance.now() - start) / 1000;
  stopping = true;
  await Promise.all(loops);
  await Promise.all(conns.map((c) => c.close()));
  if (firstError !== null) console.error(`\n${t.name}: ${errors} errors, the first: ${String(firstError)}`);
  const total = await t.total();
  const cell: TxnCell = {
    contender: t.name,
    round,
    transfersPerSec: committed / elapsed,
    attempts,
    conflicts,
    conflictRate: attempts > 0 ? conflicts / attempts : 0,
    p50ms: hist.getValueAtPercentile(50) / 1000,
    p99ms: hist.getValueAtPercentile(99) / 1000,
    errors,
    total,
    totalOk: total === opts.accounts * INITIAL_BALANCE,
  };
  hist.destroy();
  if (!cell.totalOk)
    console.error(`\n${t.name}: the balances sum to ${total}, not ${opts.accounts * INITIAL_BALANCE} (round ${round})`);
  return cell;
}

// ---- 2. watch fan-out --------------------------------------------------------

/** A contender's watchers and writer. onEvent gets the put's sequence number. */
interface FanoutContender {
  name: string;
  /** Opens n watchers of prefix; resolves once all are set up, with a function closing them. */
  open(prefix: string, n: number, onEvent: (seq: number) => void): Promise<() => Promise<void>>;
  writer(): Promise<{ put(key: string, value: string): Promise<unknown>; close(): Promise<void> }>;
}

const seqOf = (key: string, prefix: string) => Number(key.slice(prefix.length));

function piccoloFanout(s: Server): FanoutContender {
  return {
    name: "piccolo native watch",
    async open(prefix, n, onEvent) {
      const clients: PiccoloClient[] = [];
      const watchers: Watcher[] = [];
      const loops: Promise<void>[] = [];
      for (let i = 0; i < n; i++) {
        if (i % 100 === 0) clients.push(await PiccoloClient.connect({ port: s.port, timeoutMs: 30_000 }));
        const w = await clients.at(-1)!.watch(prefix, { prefix: true });
        watchers.push(w);
        loops.push(
          (async () => {
            try {
              for await (const e of w) onEvent(seqOf(e.key.toString(), prefix));
            } catch (e) {
              console.error(`\npiccolo watcher ended: ${String(e)}`);
            }
          })(),
        );
      }
      return async () => {
        await Promise.all(watchers.map((w) => w.cancel()));
        await Promise.all(loops);
        await Promise.all(clients.map((c) => c.close()));
      };
    },
    async writer() {
      const c = await PiccoloClient.connect({ port: s.port, timeoutMs: 30_000 });
      return { put: (k, v) => c.put(k, v), close: () => c.close() };
    },
  };
}

function redisFanout(s: Server): FanoutContender {
  return {
    name: "redis keyspace notifications",
    async open(prefix, n, onEvent) {
      const admin = new Redis({ port: s.port, host: "127.0.0.1" });
      await admin.config("SET", "notify-keyspace-events", "KA");
      const subs: Redis[] = [];
      const channelPrefix = `__keyspace@0__:${prefix}`;
      for (let i = 0; i < n; i++) {
        const r = new Redis({ port: s.port, host: "127.0.0.1" });
        r.on("pmessage", (_p: string, channel: string) => onEvent(seqOf(channel, channelPrefix)));
        await r.psubscribe(`${channelPrefix}*`);
        subs.push(r);
      }
      return async () => {
        for (const r of subs) r.disconnect();
        await admin.config("SET", "notify-keyspace-events", "");
        admin.disconnect();
      };
    },
    async writer() {
      const r = new Redis({ port: s.port, host: "127.0.0.1" });
      return {
        put: (k, v) => r.set(k, v),
        close: async () => {
          r.disconnect();
        },
      };
    },
  };
}

function etcdFanout(s: Server): FanoutContender {
  return {
    name: "etcd watch",
    async open(prefix, n, onEvent) {
      const clients: EtcdClient[] = [];
      const watchers: EtcdWatcher[] = [];
      for (let i = 0; i < n; i++) {
        if (i % 100 === 0) clients.push(new Etcd3!({ hosts: s.url }));
        const w = await clients.at(-1)!.watch().prefix(prefix).create();
        w.on("put", (kv) => onEvent(seqOf(kv.key.toString(), prefix)));
        watchers.push(w);
      }
      return async () => {
        await Promise.all(watchers.map((w) => w.cancel()));
        for (const c of clients) c.close();
      };
    },
    async writer() {
      const c = new Etcd3!({ hosts: s.url });
      return {
        put: (k, v) => c.kv.put({ key: Buffer.from(k), value: Buffer.from(v) }),
        close: async () => c.close(),
      };
    },
  };
}

interface FanoutCell {
  contender: string;
  watchers: number;
  round: number;
  putRate: number;
  puts: number;
  expected: number;
  delivered: number;
  lost: number;
  deliveriesPerSec: number;
  p50ms: number;
  p99ms: number;
  beforeAck: number;
  putP50ms: number;
}

async function runFanout(t: FanoutContender, watchers: number, round: number): Promise<FanoutCell> {
  const prefix = `fan${round}w${watchers}${t.name.replace(/\W/g, "").slice(0, 6)}/`;
  const putRate = Math.max(1, Math.min(opts.maxPutRate, Math.round(opts.eventsPerSec / watchers)));
  const ackAt: number[] = [];
  const sentAt: number[] = [];
  const recvSeq: number[] = [];
  const recvAt: number[] = [];
  let lastRecv = 0;
  const close = await t.open(prefix, watchers, (seq) => {
    const now = performance.now();
    recvSeq.push(seq);
    recvAt.push(now);
    lastRecv = now;
  });
  const w = await t.writer();
  await sleep(200);
  const start = performance.now();
  const end = start + opts.watchSeconds * 1000;
  const inflight = new Set<Promise<unknown>>();
  let seq = 0;
  let putErrors = 0;
  // Open loop: every 10 ms, the puts due by now, without waiting for earlier answers.
  while (performance.now() < end) {
    const due = Math.floor(((performance.now() - start) / 1000) * putRate);
    while (seq < due) {
      const n = seq++;
      sentAt[n] = performance.now();
      const p = w
        .put(`${prefix}${n}`, `v${n}`)
        .then(
          () => {
            ackAt[n] = performance.now();
          },
          () => {
            putErrors++;
          },
        )
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await sleep(10);
  }
  await Promise.all(inflight);
  const writeEnd = performance.now();
  // Drain: up to 10 s for the rest, stopping once nothing arrived for 1 s.
  const expected = seq * watchers;
  while (recvSeq.length < expected && performance.now() - writeEnd < 10_000) {
    const before = recvSeq.length;
    await sleep(1000);
    if (recvSeq.length === before) break;
  }
  await close();
  await w.close();
  if (putErrors > 0) console.error(`\n${t.name}: ${putErrors} puts failed`);
  const hist = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
  const putHist = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
  let beforeAck = 0;
  for (let i = 0; i < recvSeq.length; i++) {
    const ack = ackAt[recvSeq[i]!];
    if (ack === undefined) continue;
    const us = Math.round((recvAt[i]! - ack) * 1000);
    if (us < 0) beforeAck++;
    hist.recordValue(Math.max(1, us));
  }
  for (let n = 0; n < seq; n++)
    if (ackAt[n] !== undefined) putHist.recordValue(Math.max(1, Math.round((ackAt[n]! - sentAt[n]!) * 1000)));
  const cell: FanoutCell = {
    contender: t.name,
    watchers,
    round,
    putRate,
    puts: seq,
    expected,
    delivered: recvSeq.length,
    lost: expected - recvSeq.length,
    deliveriesPerSec: recvSeq.length / ((Math.max(lastRecv, writeEnd) - start) / 1000),
    p50ms: hist.getValueAtPercentile(50) / 1000,
    p99ms: hist.getValueAtPercentile(99) / 1000,
    beforeAck,
    putP50ms: putHist.getValueAtPercentile(50) / 1000,
  };
  hist.destroy();
  putHist.destroy();
  return cell;
}

// ---- 3. idle watchers --------------------------------------------------------

interface IdleCell {
  contender: string;
  watchers: number;
  connections: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  bytesPerWatcher: number;
  idleCpuPercent: number;
  openSeconds: number;
}

/** Opens watchers in steps up to each count of opts.idle on a fresh server, measuring RSS at each. */
async function runIdle(
  name: string,
  server: Server,
  connect: () => Promise<{ watch(prefix: string): Promise<unknown>; close(): Promise<void> }>,
): Promise<IdleCell[]> {
  const perConnection = 250;
  const max = Math.max(...opts.idle);
  const conns = await Promise.all(Array.from({ length: Math.ceil(max / perConnection) }, connect));
  await sleep(2000);
  const pid = server.child.pid!;
  const base = rssBytes(pid);
  const cells: IdleCell[] = [];
  let open = 0;
  for (const target of [...opts.idle].sort((a, b) => a - b)) {
    progress(`idle: ${name}, opening watchers up to ${target}`);
    const t0 = performance.now();
    // Watcher n goes on connection n / 250; the connections open theirs concurrently.
    await Promise.all(
      conns.map(async (c, ci) => {
        for (let n = Math.max(open, ci * perConnection); n < Math.min(target, (ci + 1) * perConnection); n++)
          await c.watch(`idle/${n}/`);
      }),
    );
    open = target;
    const openSeconds = (performance.now() - t0) / 1000;
    await sleep(3000);
    const cpu0 = cpuSeconds(pid);
    await sleep(5000);
    const idleCpuPercent = ((cpuSeconds(pid) - cpu0) / 5) * 100;
    const after = rssBytes(pid);
    cells.push({
      contender: name,
      watchers: target,
      connections: Math.ceil(target / perConnection),
      rssBeforeBytes: base,
      rssAfterBytes: after,
      bytesPerWatcher: (after - base) / target,
      idleCpuPercent,
      openSeconds,
    });
  }
  await Promise.all(conns.map((c) => c.close()));
  return cells;
}

// ---- the run -------------------------------------------------------------------

function rotate<T>(xs: T[], by: number): T[] {
  const k = by % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

const f0 = (n: number) => Math.round(n).toLocaleString("en-US");
const f2 = (n: number) => n.toFixed(2);
const mb = (n: number) => (n / 1024 / 1024).toFixed(1);

const txnCells: TxnCell[] = [];
const fanCells: FanoutCell[] = [];
const idleCells: IdleCell[] = [];
const haveEtcd = Etcd3 !== null;

process.on("SIGINT", () => {
  for (const c of children) c.kill("SIGKILL");
  for (const f of cleanups) f();
  process.exit(130);
});

const file = quick ? "txn-watch-quick" : "txn-watch";
if (o.replot) {
  // Tables and charts again from the JSON of an earlier run, nothing measured.
  const j = JSON.parse(readFileSync(`${opts.out}/${file}.json`, "utf8"));
  txnCells.push(...j.transfers.cells);
  fanCells.push(...j.fanout.cells);
  idleCells.push(...j.idle);
  Object.assign(opts, { ...j.options, only: new Set(j.options.only) });
} else
  try {
    if (opts.only.has("txn") || opts.only.has("watch")) {
      const piccolo = await startPiccolo();
      const redis = await startRedis();
      const etcd = haveEtcd ? await startEtcd() : null;
      try {
        if (opts.only.has("txn")) {
          const contenders = [
            piccoloNative(piccolo),
            redisLike("piccolo resp multi/exec", piccolo.respPort),
            redisLike("redis multi/exec", redis.port),
            ...(etcd ? [etcdTxn(etcd)] : []),
          ];
          // Separate key spaces: the native and RESP runs share a node, so each loads before its run.
          const total = opts.rounds * contenders.length;
          let done = 0;
          for (let round = 1; round <= opts.rounds; round++) {
            for (const t of rotate(contenders, round - 1)) {
              progress(`transfers: round ${round}/${opts.rounds} ${t.name} (${++done}/${total})`);
              await t.load();
              txnCells.push(await runTransfers(t, round));
            }
          }
          progressDone();
        }
        if (opts.only.has("watch")) {
          const contenders = [piccoloFanout(piccolo), redisFanout(redis), ...(etcd ? [etcdFanout(etcd)] : [])];
          const total = opts.rounds * contenders.length * opts.watchers.length;
          let done = 0;
          for (let round = 1; round <= opts.rounds; round++) {
            for (const watchers of opts.watchers) {
              for (const t of rotate(contenders, round - 1)) {
                progress(`fan-out: round ${round}/${opts.rounds} ${watchers} watchers ${t.name} (${++done}/${total})`);
                fanCells.push(await runFanout(t, watchers, round));
              }
            }
          }
          progressDone();
        }
      } finally {
        await stop(piccolo);
        await stop(redis);
        if (etcd) await stop(etcd);
      }
    }

    if (opts.only.has("cluster")) {
      // Both durable on disk: Piccolo fsyncs its Raft logs, etcd its WAL.
      const root = mkdtempSync(join(tmpdir(), "piccolo-bench-cluster-"));
      cleanups.push(() => rmSync(root, { recursive: true, force: true }));
      progress("cluster: starting 3 Piccolo members and 3 etcd members");
      const pc = await startPiccoloCluster(root);
      const ec = haveEtcd ? await startEtcdCluster(root) : null;
      try {
        const contenders = [
          piccoloCluster(pc.members),
          ...(ec
            ? [
                etcdTxn(
                  { child: ec.children[0]!, port: 0, respPort: 0, url: ec.url },
                  "etcd cluster txn",
                  groupedAccount,
                ),
              ]
            : []),
        ];
        const total = opts.rounds * contenders.length;
        let done = 0;
        for (let round = 1; round <= opts.rounds; round++) {
          for (const t of rotate(contenders, round - 1)) {
            progress(`cluster transfers: round ${round}/${opts.rounds} ${t.name} (${++done}/${total})`);
            await t.load();
            txnCells.push(await runTransfers(t, round));
          }
        }
        progressDone();
      } finally {
        for (const k of [...pc.children, ...(ec?.children ?? [])]) {
          if (k.exitCode === null) {
            k.kill("SIGTERM");
            await new Promise((r) => k.once("exit", r));
          }
        }
      }
    }

    if (opts.only.has("idle")) {
      const piccolo = await startPiccolo();
      try {
        idleCells.push(
          ...(await runIdle("piccolo", piccolo, async () => {
            const c = await PiccoloClient.connect({ port: piccolo.port, timeoutMs: 60_000 });
            return {
              watch: (p: string) => c.watch(p, { prefix: true }),
              close: () => c.close(),
            };
          })),
        );
      } finally {
        await stop(piccolo);
      }
      if (haveEtcd) {
        const etcd = await startEtcd();
        try {
          idleCells.push(
            ...(await runIdle("etcd", etcd, async () => {
              const c = new Etcd3!({ hosts: etcd.url });
              return {
                watch: (p: string) => c.watch().prefix(p).create(),
                close: async () => c.close(),
              };
            })),
          );
        } finally {
          await stop(etcd);
        }
      }
      progressDone();
    }
  } finally {
    for (const c of children) c.kill("SIGTERM");
    for (const f of cleanups) f();
  }

// ---- report --------------------------------------------------------------------

const txnSummary = [...new Set(txnCells.map((c) => c.contender))].map((name) => {
  const cs = txnCells.filter((c) => c.contender === name);
  return {
    contender: name,
    transfersPerSec: median(cs.map((c) => c.transfersPerSec)),
    conflictRate: median(cs.map((c) => c.conflictRate)),
    p50ms: median(cs.map((c) => c.p50ms)),
    p99ms: median(cs.map((c) => c.p99ms)),
    errors: cs.reduce((s, c) => s + c.errors, 0),
    totalsOk: cs.every((c) => c.totalOk),
    rounds: cs.map((c) => Math.round(c.transfersPerSec)),
  };
});
const redisTps = txnSummary.find((s) => s.contender === "redis multi/exec")?.transfersPerSec ?? 0;
if (txnSummary.length > 0) {
  console.log(
    `\nTransfers: ${opts.clients} clients, ${opts.accounts} accounts, ${opts.seconds} s per run, median of ${opts.rounds} rounds\n`,
  );
  console.log(
    table(
      ["contender", "transfers/s", "vs redis", "conflicts/attempt", "p50 ms", "p99 ms", "errors", "sum kept", "rounds"],
      txnSummary.map((s) => [
        s.contender,
        f0(s.transfersPerSec),
        redisTps > 0 ? f2(s.transfersPerSec / redisTps) : "-",
        `${(s.conflictRate * 100).toFixed(1)}%`,
        f2(s.p50ms),
        f2(s.p99ms),
        s.errors,
        s.totalsOk ? "yes" : "NO",
        s.rounds.join(" "),
      ]),
    ),
  );
}

const fanSummary = opts.watchers.flatMap((watchers) =>
  [...new Set(fanCells.map((c) => c.contender))].flatMap((name) => {
    const cs = fanCells.filter((c) => c.contender === name && c.watchers === watchers);
    if (cs.length === 0) return [];
    return [
      {
        contender: name,
        watchers,
        putRate: cs[0]!.putRate,
        deliveriesPerSec: median(cs.map((c) => c.deliveriesPerSec)),
        lost: cs.reduce((s, c) => s + c.lost, 0),
        expected: cs.reduce((s, c) => s + c.expected, 0),
        p50ms: median(cs.map((c) => c.p50ms)),
        p99ms: median(cs.map((c) => c.p99ms)),
        beforeAck:
          cs.reduce((s, c) => s + c.beforeAck, 0) /
          Math.max(
            1,
            cs.reduce((s, c) => s + c.delivered, 0),
          ),
        putP50ms: median(cs.map((c) => c.putP50ms)),
      },
    ];
  }),
);
if (fanSummary.length > 0) {
  console.log(
    `\nWatch fan-out: one writer, new keys under one prefix, ${opts.watchSeconds} s per run, median of ${opts.rounds} rounds\n`,
  );
  console.log(
    table(
      ["watchers", "contender", "puts/s", "deliveries/s", "lost", "p50 ms", "p99 ms", "before ack", "put p50 ms"],
      fanSummary.map((s) => [
        s.watchers,
        s.contender,
        s.putRate,
        f0(s.deliveriesPerSec),
        `${s.lost}/${s.expected}`,
        f2(s.p50ms),
        f2(s.p99ms),
        `${(s.beforeAck * 100).toFixed(0)}%`,
        f2(s.putP50ms),
      ]),
    ),
  );
}

if (idleCells.length > 0) {
  console.log("\nIdle prefix watchers (250 per connection), a fresh server each\n");
  console.log(
    table(
      ["contender", "watchers", "RSS before MB", "RSS after MB", "bytes/watcher", "idle CPU % of a core", "open s"],
      idleCells.map((c) => [
        c.contender,
        f0(c.watchers),
        mb(c.rssBeforeBytes),
        mb(c.rssAfterBytes),
        f0(c.bytesPerWatcher),
        c.idleCpuPercent.toFixed(1),
        c.openSeconds.toFixed(1),
      ]),
    ),
  );
}

mkdirSync(opts.out, { recursive: true });
if (!o.replot)
  writeFileSync(
    `${opts.out}/${file}.json`,
    `${JSON.stringify(
      {
        machine: machine(),
        options: { ...opts, only: [...opts.only] },
        etcd: haveEtcd ? etcdVersion.stdout.split("\n")[0] : etcdMissing,
        transfers: { summary: txnSummary, cells: txnCells },
        fanout: { summary: fanSummary, cells: fanCells },
        idle: idleCells,
      },
      null,
      2,
    )}\n`,
  );
writeFileSync(
  `${opts.out}/${file}.svg`,
  barChart(
    `2-key transfers/s, ${opts.clients} clients, ${opts.accounts} accounts (median of ${opts.rounds})`,
    "transfers/s",
    txnSummary.map((s) => ({
      group: s.contender,
      series: s.contender.split(" ")[0]!,
      value: s.transfersPerSec,
      note: `p99 ${f2(s.p99ms)} ms`,
    })),
  ),
);
writeFileSync(
  `${opts.out}/${file}-fanout.svg`,
  barChart(
    "Watch delivery latency p50 (µs; p99 above)",
    "µs",
    fanSummary.map((s) => ({
      group: `${s.watchers} watchers`,
      series: s.contender.split(" ")[0]!,
      value: s.p50ms * 1000,
      note: `p99 ${f0(s.p99ms * 1000)}`,
    })),
  ),
);
console.log(`\nwrote ${opts.out}/${file}.json, ${file}.svg and ${file}-fanout.svg`);
// A gRPC channel of etcd3 may keep retrying a stopped etcd in the background: do not wait for it.
process.exit(0);

/** The transfer itself: one from a to b, if neither changed since they were read (version compares). */
async function moveOne(
  c: { txn: PiccoloClient["txn"] },
  a: string,
  b: string,
  ea: { value: Buffer; version: number },
  eb: { value: Buffer; version: number },
): Promise<boolean> {
  const r = await c.txn({
    compare: [
      { key: a, version: ea.version },
      { key: b, version: eb.version },
    ],
    success: [
      { op: "put", key: a, value: String(Number(ea.value) - 1) },
      { op: "put", key: b, value: String(Number(eb.value) + 1) },
    ],
  });
  return r.succeeded;
}
