// The Redis-protocol benchmarks' pieces: the tools they need, redis-server
// and a Piccolo node's Redis port started on free loopback ports (plaintext
// or TLS only), a PING until they answer, and one redis-benchmark run with
// its --csv parsed.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { freePort } from "./ports.js";
import type { Procs } from "./procs.js";

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
}

/** Spawns through `procs` when given (killed with the benchmark); without, the caller kills it. */
function spawnServer(procs: Procs | undefined, name: string, cmd: string, args: string[]): ChildProcess {
  if (!procs) return spawn(cmd, args, { stdio: "ignore" });
  const c = procs.child(name, cmd, args, []);
  c.stdout!.resume();
  return c;
}

/** redis-server without persistence; with `tls`, on a TLS port only (no client certificates asked). */
export async function startRedis(o: { name?: string; tls?: ServerTls; procs?: Procs } = {}): Promise<RespServer> {
  const port = await freePort();
  const name = o.name ?? "redis";
  const listen = o.tls
    ? [
        "--port",
        "0",
        "--tls-port",
        String(port),
        "--tls-cert-file",
        o.tls.certFile,
        "--tls-key-file",
        o.tls.keyFile,
        "--tls-ca-cert-file",
        o.tls.caFile,
        "--tls-auth-clients",
        "no",
      ]
    : ["--port", String(port)];
  const child = spawnServer(o.procs, name, "redis-server", [
    ...listen,
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
  ]);
  await waitPing(port, o.tls);
  return { name, port, child, ...(o.tls ? { tls: o.tls } : {}) };
}

const CLI = new URL("../../src/cli/main.js", import.meta.url).pathname;

/**
 * `piccolo server --port 0 --resp-port P ...args` (the native port on any free port); with `tls`, every
 * client port speaks TLS only (--tls-cert-file, --tls-key-file, --tls-ca-cert-file).
 */
export async function startPiccoloResp(
  name: string,
  args: string[],
  o: { tls?: ServerTls; procs?: Procs } = {},
): Promise<RespServer> {
  const port = await freePort();
  const tlsArgs = o.tls
    ? ["--tls-cert-file", o.tls.certFile, "--tls-key-file", o.tls.keyFile, "--tls-ca-cert-file", o.tls.caFile]
    : [];
  const child = spawnServer(o.procs, name, process.execPath, [
    CLI,
    "server",
    "--port",
    "0",
    "--resp-port",
    String(port),
    ...tlsArgs,
    ...args,
  ]);
  await waitPing(port, o.tls);
  return { name, port, child, ...(o.tls ? { tls: o.tls } : {}) };
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
  const r = spawnSync(
    "redis-benchmark",
    ["-h", "127.0.0.1", "-p", String(s.port), ...clientTlsArgs(s.tls), "--csv", ...args],
    { encoding: "utf8", timeout: 600_000 },
  );
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
  return lines;
}
