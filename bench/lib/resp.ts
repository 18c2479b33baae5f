// The Redis-protocol benchmarks' pieces: the tools they need, redis-server
// and a Piccolo node's Redis port started on free loopback ports (plaintext
// or TLS only), a PING until they answer, one redis-benchmark run with its
// --csv parsed, commands on one connection (INFO parsed), and the 1M-key
// workload written as RESP for redis-cli --pipe.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { closeSync, createWriteStream, openSync } from "node:fs";
import { connect } from "node:net";
import { freePort } from "./ports.js";
import { type Procs, waitLine } from "./procs.js";

/** Says which tool is missing and exits 2 (nothing is installed). */
export function requireTools(bench: string, tools: string[]): void {
  for (const tool of tools) {
    if (spawnSync(tool, ["--version"]).status !== 0) {
      console.error(`${bench} needs ${tool}: apt-get install -y redis-server redis-tools (nothing was installed)`);
      process.exit(2);
    }
  }
}

/** TLS for a server: its certificate and key, and the CA clients are given (redis-cli/redis-benchmark --cacert). */
export interface ServerTls {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/** redis-cli's and redis-benchmark's flags for a server (plaintext without tls). */
export function clientTlsArgs(tls?: ServerTls): string[] {
  return tls ? ["--tls", "--cacert", tls.caFile] : [];
}

export async function waitPing(port: number, tls?: ServerTls): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = spawnSync("redis-cli", [...clientTlsArgs(tls), "-h", "127.0.0.1", "-p", String(port), "ping"], {
      encoding: "utf8",
    });
    if (r.stdout?.includes("PONG")) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing answers on ${port}${tls ? " (TLS)" : ""}`);
}

export interface RespServer {
  name: string;
  port: number;
  child: ChildProcess;
  tls?: ServerTls;
  /** The program and its arguments, as started (for reports). */
  command: string[];
  /** Piccolo only: its native (Cap'n Proto) port. */
  nativePort?: number;
  /** Piccolo only, when started through `procs`: the shard workers it says it runs. */
  shards?: number;
}

/** Spawns through `procs` when given (killed with the benchmark); without, the caller kills it. */
function spawnServer(procs: Procs | undefined, name: string, cmd: string, args: string[]): ChildProcess {
  if (!procs) return spawn(cmd, args, { stdio: "ignore" });
  return procs.child(name, cmd, args, []);
}

/** Redis's appendfsync policies; Piccolo's --fsync has the same three. */
export type Appendfsync = "always" | "everysec" | "no";

/**
 * redis-server's flags for a loopback port: without persistence (`--save "" --appendonly no`), or with
 * `appendfsync` an AOF (`--appendonly yes --appendfsync P --save ""`, no RDB snapshots); `dir` is where its
 * files go. With `tls`, a TLS port only (no client certificates asked).
 */
export function redisServerArgs(o: { port: number; tls?: ServerTls; dir?: string; appendfsync?: Appendfsync }) {
  const listen = o.tls
    ? [
        "--port",
        "0",
        "--tls-port",
        String(o.port),
        "--tls-cert-file",
        o.tls.certFile,
        "--tls-key-file",
        o.tls.keyFile,
        "--tls-ca-cert-file",
        o.tls.caFile,
        "--tls-auth-clients",
        "no",
      ]
    : ["--port", String(o.port)];
  return [
    ...listen,
    "--bind",
    "127.0.0.1",
    ...(o.dir === undefined ? [] : ["--dir", o.dir]),
    "--save",
    "",
    ...(o.appendfsync === undefined ? ["--appendonly", "no"] : ["--appendonly", "yes", "--appendfsync", o.appendfsync]),
  ];
}

/**
 * redis-server on a free port (redisServerArgs: without persistence unless `appendfsync`); `args` come last
 * (a later directive wins).
 */
export async function startRedis(
  o: { name?: string; tls?: ServerTls; procs?: Procs; dir?: string; appendfsync?: Appendfsync; args?: string[] } = {},
): Promise<RespServer> {
  const port = await freePort();
  const name = o.name ?? "redis";
  const args = [...redisServerArgs({ ...o, port }), ...(o.args ?? [])];
  const child = spawnServer(o.procs, name, "redis-server", args);
  child.stdout?.resume();
  await waitPing(port, o.tls);
  return { name, port, child, command: ["redis-server", ...args], ...(o.tls ? { tls: o.tls } : {}) };
}

const CLI = new URL("../../src/cli/main.js", import.meta.url).pathname;

/**
 * `piccolo server --port N --resp-port P ...args` (both on free ports); with `tls`, every client port
 * speaks TLS only (--tls-cert-file, --tls-key-file, --tls-ca-cert-file). Through `procs`, also reads the
 * shard count from the node's "listening" line.
 */
export async function startPiccoloResp(
  name: string,
  args: string[],
  o: { tls?: ServerTls; procs?: Procs } = {},
): Promise<RespServer> {
  const port = await freePort();
  const nativePort = await freePort();
  const tlsArgs = o.tls
    ? ["--tls-cert-file", o.tls.certFile, "--tls-key-file", o.tls.keyFile, "--tls-ca-cert-file", o.tls.caFile]
    : [];
  const argv = [CLI, "server", "--port", String(nativePort), "--resp-port", String(port), ...tlsArgs, ...args];
  const child = spawnServer(o.procs, name, process.execPath, argv);
  const listening = child.stdout
    ? waitLine(child, /listening on \S+ \(shards: (\d+)\)/, name, 60_000).then(
        (m) => Number(m[1]),
        () => undefined,
      )
    : undefined;
  child.stdout?.resume();
  await waitPing(port, o.tls);
  // The line comes before the node serves; a node that printed another waits no longer than this.
  const shards = await Promise.race([listening, new Promise<undefined>((r) => setTimeout(() => r(undefined), 2000))]);
  return {
    name,
    port,
    child,
    command: [process.execPath, ...argv],
    nativePort,
    ...(shards === undefined ? {} : { shards }),
    ...(o.tls ? { tls: o.tls } : {}),
  };
}

/** One line of redis-benchmark --csv (Redis 7: rps, then latencies in ms). */
export interface BenchmarkLine {
  /** SET, GET, INCR, MSET... (the first word of redis-benchmark's test name) */
  test: string;
  rps: number;
  avgMs: number;
  p50ms: number;
  p95ms: number;
  p99ms: number;
  maxMs: number;
}

/** redis-benchmark -h 127.0.0.1 -p PORT [--tls --cacert CA] --csv ...args; one entry per test. */
export function redisBenchmark(s: { port: number; tls?: ServerTls }, args: string[]): BenchmarkLine[] {
  return redisBenchmarkRun(s, args).lines;
}

const TIME = "/usr/bin/time";
const hasTime = spawnSync(TIME, ["-f", "%e", "true"]).status === 0;

/**
 * redisBenchmark, and what redis-benchmark itself used: its wall-clock and CPU (user + system) time in ms,
 * from /usr/bin/time (cpuMs null without it). A load generator's CPU is the share of the machine it takes
 * from the server it measures.
 */
export function redisBenchmarkRun(
  s: { port: number; tls?: ServerTls },
  args: string[],
): { lines: BenchmarkLine[]; wallMs: number; cpuMs: number | null } {
  const argv = ["-h", "127.0.0.1", "-p", String(s.port), ...clientTlsArgs(s.tls), "--csv", ...args];
  const t0 = performance.now();
  const r = hasTime
    ? spawnSync(TIME, ["-f", "time: %U %S", "redis-benchmark", ...argv], { encoding: "utf8", timeout: 600_000 })
    : spawnSync("redis-benchmark", argv, { encoding: "utf8", timeout: 600_000 });
  const wallMs = performance.now() - t0;
  const t = /time: ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr ?? "");
  const lines: BenchmarkLine[] = [];
  for (const line of (r.stdout ?? "").split("\n")) {
    const f = line.split(",").map((x) => x.replace(/"/g, ""));
    if (f.length < 8 || f[0] === "test") continue;
    lines.push({
      test: f[0]!.split(" ")[0]!,
      rps: Number(f[1]),
      avgMs: Number(f[2]),
      p50ms: Number(f[4]),
      p95ms: Number(f[5]),
      p99ms: Number(f[6]),
      maxMs: Number(f[7]),
    });
  }
  return { lines, wallMs, cpuMs: t ? (Number(t[1]) + Number(t[2])) * 1000 : null };
}

/** One test of redis-benchmark's full report (without --csv): its figures and its tail. */
export interface BenchmarkTail {
  test: string;
  rps: number;
  p50ms: number;
  p99ms: number;
  /** The first point of its percentile distribution at or past 99.9%. */
  p999ms: number;
  maxMs: number;
  requests: number;
  /** Requests slower than 10 ms, from the cumulative distribution (its buckets end a few µs past each ms). */
  over10ms: number;
}

/**
 * Parses redis-benchmark's full report (run without --csv): one entry per "====== TEST ======" block.
 * --csv gives p50/p95/p99/max only; the tail (p99.9, how many requests waited over 10 ms) is in the
 * distributions the full report prints.
 */
export function parseBenchmarkReport(stdout: string): BenchmarkTail[] {
  const out: BenchmarkTail[] = [];
  const blocks = stdout.replace(/\r/g, "\n").split(/^====== (.+) ======$/m);
  for (let i = 1; i + 1 < blocks.length; i += 2) {
    const test = blocks[i]!.split(" ")[0]!;
    const body = blocks[i + 1]!;
    const [byPercentile = "", cumulative = ""] = body.split("Cumulative distribution of latencies:");
    const points = (text: string) =>
      [...text.matchAll(/^([\d.]+)% <= ([\d.]+) milliseconds \(cumulative count (\d+)\)$/gm)].map((m) => ({
        pct: Number(m[1]),
        ms: Number(m[2]),
        count: Number(m[3]),
      }));
    const pcts = points(byPercentile);
    const cum = points(cumulative);
    const summary =
      /latency summary \(msec\):\s+avg\s+min\s+p50\s+p95\s+p99\s+max\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)/.exec(
        body,
      );
    const rps = /throughput summary: ([\d.]+) requests per second/.exec(body);
    if (pcts.length === 0 || cum.length === 0 || summary === null || rps === null) continue;
    const requests = cum[cum.length - 1]!.count;
    let within10 = 0;
    for (const c of cum) if (c.ms <= 10.01) within10 = c.count;
    out.push({
      test,
      rps: Number(rps[1]),
      p50ms: Number(summary[3]),
      p99ms: Number(summary[5]),
      p999ms: (pcts.find((x) => x.pct >= 99.9) ?? pcts[pcts.length - 1]!).ms,
      maxMs: Number(summary[6]),
      requests,
      over10ms: requests - within10,
    });
  }
  return out;
}

/**
 * Sends commands on one connection and collects one reply per command (simple
 * strings, errors, integers, bulk strings; enough for PING, DBSIZE, INFO, SAVE).
 */
export function respCommands(port: number, commands: string[][], timeoutMs = 600_000): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, "127.0.0.1");
    let buf = Buffer.alloc(0);
    const replies: string[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer on ${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on("close", () => {
      clearTimeout(timer);
      reject(new Error(`connection to ${port} closed after ${replies.length} replies`)); // no-op once resolved
    });
    sock.on("connect", () => {
      sock.write(
        commands
          .map((c) => `*${c.length}\r\n${c.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`)
          .join(""),
      );
    });
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const eol = buf.indexOf("\r\n");
        if (eol < 0) break;
        const head = buf.subarray(0, eol).toString();
        if (head[0] === "$") {
          const len = Number(head.slice(1));
          if (len < 0) {
            replies.push("");
            buf = buf.subarray(eol + 2);
            continue;
          }
          if (buf.length < eol + 2 + len + 2) break;
          replies.push(buf.subarray(eol + 2, eol + 2 + len).toString());
          buf = buf.subarray(eol + 2 + len + 2);
        } else {
          replies.push(head);
          buf = buf.subarray(eol + 2);
        }
      }
      if (replies.length >= commands.length) {
        clearTimeout(timer);
        sock.end();
        resolve(replies);
      }
    });
  });
}

/** INFO `section` as its fields. */
export async function respInfo(port: number, section: string): Promise<Record<string, string>> {
  const [text] = await respCommands(port, [["INFO", section]]);
  const fields: Record<string, string> = {};
  for (const line of (text ?? "").split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0) fields[line.slice(0, i)] = line.slice(i + 1);
  }
  return fields;
}

/** The team's 1M-key workload: key i is key:%012d (16 bytes), its value 64 bytes, distinct per key. */
export function keyValue(i: number): { key: string; value: string } {
  const id = String(i).padStart(12, "0");
  return {
    key: `key:${id}`,
    value: `v${id}abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ`.slice(0, 64),
  };
}

/** Writes `n` SETs of keyValue(0..n-1), as RESP, to `path` for redis-cli --pipe; answers `path`. */
export async function writeSetLoader(path: string, n: number): Promise<string> {
  const out = createWriteStream(path);
  for (let i = 0; i < n; ) {
    let chunk = "";
    for (let j = 0; j < 10_000 && i < n; j++, i++) {
      const { key, value } = keyValue(i);
      chunk += `*3\r\n$3\r\nSET\r\n$16\r\n${key}\r\n$64\r\n${value}\r\n`;
    }
    if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
  }
  await new Promise<void>((r, j) => out.end((err?: Error | null) => (err ? j(err) : r())));
  return path;
}

/** redis-cli --pipe of a loader file into 127.0.0.1:`port`; answers ms and the replies and errors it counted. */
export function pipeLoad(port: number, file: string): { ms: number; replies: number; errors: number } {
  const fd = openSync(file, "r");
  const t0 = performance.now();
  const r = spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", String(port), "--pipe"], {
    stdio: [fd, "pipe", "pipe"],
    encoding: "utf8",
    timeout: 900_000,
  });
  const ms = performance.now() - t0;
  closeSync(fd);
  const m = /errors: (\d+), replies: (\d+)/.exec(r.stdout ?? "");
  if (!m) throw new Error(`redis-cli --pipe into ${port}: ${r.stdout} ${r.stderr}`);
  return { ms, errors: Number(m[1]), replies: Number(m[2]) };
}
