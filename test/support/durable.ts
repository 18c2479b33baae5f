// Real durable nodes for the tests in test/durability/: a `piccolo server`
// child process on a data directory the TEST owns (it outlives the process,
// so the same directory can be reopened after a SIGTERM or a kill -9), with
// its stdout kept (the "piccolo data in DIR: recovered N keys" line), and the
// file surgery those tests do on the journal's segments and snapshots.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PiccoloClient } from "../../src/client/client.js";
import { HEADER_BYTES } from "../../src/wal/record.js";
import { Redis, type RedisOptions } from "ioredis";
import { CLI, freePort } from "./node.js";

/** A fresh temporary directory; the data directory is `<it>/data` (created by the node). */
export function tempRoot(prefix = "piccolo-durable-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface DurableNode {
  port: number;
  respPort: number;
  dataDir: string;
  process: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Keys the node said it recovered at start ("recovered N keys"). */
  recoveredKeys: number;
  client(options?: { timeoutMs?: number }): Promise<PiccoloClient>;
  redis(options?: RedisOptions): Redis;
  /** SIGTERM (a clean stop), then wait; resolves with the exit code. The data directory stays. */
  stop(): Promise<number | null>;
  /** kill -9, then wait for the exit. The data directory stays. */
  kill9(): Promise<void>;
  /** Resolves when the process has exited (with its code and signal). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const live = new Set<ChildProcess>();

/** Kills (SIGKILL) every node a test started and did not stop: for after() hooks. */
export async function killAll(): Promise<void> {
  const waits: Promise<unknown>[] = [];
  for (const c of live) {
    if (c.exitCode === null && c.signalCode === null) {
      waits.push(new Promise((r) => c.once("exit", r)));
      c.kill("SIGKILL");
    }
  }
  live.clear();
  await Promise.all(waits);
}

function spawnServer(dataDir: string, respPort: number, args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(
    process.execPath,
    [
      CLI,
      "server",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--resp-port",
      String(respPort),
      "--data-dir",
      dataDir,
      ...args,
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } },
  );
  live.add(child);
  child.once("exit", () => live.delete(child));
  return child;
}

/** Starts a durable node on `dataDir` (default flags plus `args`); rejects if it does not listen within 20 s. */
export async function startDurable(
  dataDir: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<DurableNode> {
  const respPort = await freePort();
  const child = spawnServer(dataDir, respPort, args, env);
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`node did not start in 20s; stdout:\n${out}\nstderr:\n${err}`));
    }, 20_000);
    const onData = (): void => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off("data", onData);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on("data", onData);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`node exited (${code ?? signal}) before listening; stdout:\n${out}\nstderr:\n${err}`));
    });
  });
  const m = /recovered (\d+) keys/.exec(out);
  if (m === null) throw new Error(`no "recovered N keys" line on stdout:\n${out}`);
  const redisClients: Redis[] = [];
  return {
    port,
    respPort,
    dataDir,
    process: child,
    stdout: () => out,
    stderr: () => err,
    recoveredKeys: Number(m[1]),
    exited,
    client: (options = {}) => PiccoloClient.connect({ host: "127.0.0.1", port, ...options }),
    redis(options = {}) {
      const r = new Redis({ host: "127.0.0.1", port: respPort, retryStrategy: () => null, ...options });
      r.on("error", () => {});
      redisClients.push(r);
      return r;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      const { code } = await exited;
      clearTimeout(timer);
      for (const r of redisClients) r.disconnect();
      return code;
    },
    async kill9() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
      for (const r of redisClients) r.disconnect();
    },
  };
}

export interface FailedStart {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts a node that is expected NOT to start; resolves with how it exited (rejects if it listens). */
export async function failedStart(
  dataDir: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<FailedStart> {
  const child = spawnServer(dataDir, await freePort(), args, env);
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`node neither listened nor exited in 20s; stdout:\n${out}\nstderr:\n${err}`));
    }, 20_000);
    child.stdout!.on("data", () => {
      if (/listening on/.test(out)) {
        clearTimeout(timer);
        child.kill("SIGKILL");
        reject(new Error(`the node started, but it should have refused to; stdout:\n${out}\nstderr:\n${err}`));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: out, stderr: err });
    });
  });
}

/** The shard directories of a data directory, in shard order. */
export function shardDirs(dataDir: string): string[] {
  return readdirSync(dataDir)
    .filter((n) => /^shard-\d+$/.test(n))
    .sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)))
    .map((n) => join(dataDir, n));
}

/** A shard directory's log segments (full paths, oldest first) and snapshots. */
export function journalFiles(shardDir: string): { segments: string[]; snapshots: string[] } {
  const names = readdirSync(shardDir).sort();
  return {
    segments: names.filter((n) => /^\d{16}\.wal$/.test(n)).map((n) => join(shardDir, n)),
    snapshots: names.filter((n) => /^snap-\d{16}\.snap$/.test(n)).map((n) => join(shardDir, n)),
  };
}

export function fileSize(path: string): number {
  return statSync(path).size;
}

/**
 * Where each record of a journal file starts, read from the WAL framing's
 * length field (src/wal/record.ts: u32 payload length, u32 CRC32C, u8 type,
 * then the payload).
 */
export function recordStarts(path: string): number[] {
  const buf = readFileSync(path);
  const starts: number[] = [];
  let at = 0;
  while (at + HEADER_BYTES <= buf.length) {
    starts.push(at);
    at += HEADER_BYTES + buf.readUInt32LE(at);
  }
  return starts;
}

/** The segment (of every shard's) holding the most bytes: the one a test damages. */
export function biggestSegment(dataDir: string): string {
  const all = shardDirs(dataDir).flatMap((d) => journalFiles(d).segments);
  if (all.length === 0) throw new Error(`no log segment in ${dataDir}`);
  return all.reduce((a, b) => (fileSize(b) > fileSize(a) ? b : a));
}
