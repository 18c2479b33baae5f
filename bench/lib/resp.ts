// The Redis-protocol benchmarks' pieces: the tools they need, redis-server
// and a Piccolo node's Redis port started on free loopback ports (plaintext
// or TLS only), a PING until they answer, one redis-benchmark run with its
// --csv parsed, commands on one connection (INFO parsed), and the 1M-key
// workload written as RESP for redis-cli --pipe.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { closeSync, createWriteStream, openSync } from "node:fs";
import { connect } from "node:net";
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

/**
 * redis-server without persistence; with `tls`, on a TLS port only (no client certificates asked); `args`
 * come last (a later directive wins: `--appendonly yes` turns persistence on).
 */
export async function startRedis(
  o: { name?: string; tls?: ServerTls; procs?: Procs; args?: string[] } = {},
): Promise<RespServer> {
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
    ...(o.args ?? []),
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
