// npm run bench:memory: bytes per key for 1M keys of 16 bytes with 64-byte
// values, in one ShardStore and, when redis-server is installed, in Redis on
// the same machine (used_memory and RSS), side by side.
//
//   node --expose-gc dist/bench/memory.js [--keys N]
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { ShardStore } from "../src/shard/store.js";
import { freePort } from "./lib/ports.js";

const keysArg = process.argv.indexOf("--keys");
const N = keysArg > 0 ? Number(process.argv[keysArg + 1]) : 1_000_000;
const VALUE_BYTES = 64;

function key(i: number): Buffer {
  // 16 bytes: "key:" + 12 digits
  return Buffer.from(`key:${String(i).padStart(12, "0")}`);
}

const gc = (globalThis as { gc?: () => void }).gc;
function settle(): void {
  for (let i = 0; i < 3; i++) gc?.();
}

async function measurePiccolo() {
  settle();
  const before = process.memoryUsage();
  const store = new ShardStore();
  const value = randomBytes(VALUE_BYTES);
  const t0 = performance.now();
  for (let i = 0; i < N; i++) store.set(key(i), value, i + 1, 0);
  const loadMs = performance.now() - t0;
  settle();
  const after = process.memoryUsage();
  const t1 = performance.now();
  let found = 0;
  for (let i = 0; i < N; i++) if (store.find(key(i)) >= 0) found++;
  const findMs = performance.now() - t1;
  if (found !== N) throw new Error(`lost keys: ${N - found}`);
  const external = after.external + after.arrayBuffers - (before.external + before.arrayBuffers);
  return {
    memoryBytes: store.memoryBytes(),
    bytesPerKey: store.memoryBytes() / N,
    rssBytesPerKey: (after.rss - before.rss) / N,
    heapAndBuffersPerKey: (after.heapUsed - before.heapUsed + external) / N,
    loadNsPerKey: (loadMs * 1e6) / N,
    findNsPerKey: (findMs * 1e6) / N,
  };
}

function redisCommand(port: number, args: string[]): string {
  const r = spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], { encoding: "utf8" });
  return r.stdout;
}

async function measureRedis() {
  if (spawnSync("redis-server", ["--version"]).status !== 0) return null;
  const port = await freePort();
  const server = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    {
      stdio: "ignore",
    },
  );
  try {
    for (let i = 0; i < 50 && !redisCommand(port, ["ping"]).includes("PONG"); i++)
      await new Promise((r) => setTimeout(r, 100));
    const info = (s: string, field: string) => Number(new RegExp(`${field}:(\\d+)`).exec(s)?.[1] ?? Number.NaN);
    const base = redisCommand(port, ["info", "memory"]);
    const value = randomBytes(VALUE_BYTES);
    // Pipelined RESP writer: SET key value, in batches.
    const socket = createConnection({ host: "127.0.0.1", port });
    await new Promise((r) => socket.once("connect", r));
    let replies = 0;
    socket.on("data", (d: Buffer) => {
      for (const b of d) if (b === 10) replies++;
    });
    const head = Buffer.from(`*3\r\n$3\r\nSET\r\n$16\r\n`);
    const mid = Buffer.from(`\r\n$${VALUE_BYTES}\r\n`);
    const tail = Buffer.from("\r\n");
    for (let i = 0; i < N; i += 10_000) {
      const parts: Buffer[] = [];
      for (let j = i; j < Math.min(N, i + 10_000); j++) parts.push(head, key(j), mid, value, tail);
      if (!socket.write(Buffer.concat(parts))) await new Promise((r) => socket.once("drain", r));
      while (replies < i - 50_000) await new Promise((r) => setTimeout(r, 5));
    }
    while (replies < N) await new Promise((r) => setTimeout(r, 10));
    socket.destroy();
    const after = redisCommand(port, ["info", "memory"]);
    return {
      usedMemoryBytes: info(after, "used_memory"),
      bytesPerKey: (info(after, "used_memory") - info(base, "used_memory")) / N,
      rssBytes: info(after, "used_memory_rss"),
      rssBytesPerKey: (info(after, "used_memory_rss") - info(base, "used_memory_rss")) / N,
      version: /redis_version:(\S+)/.exec(redisCommand(port, ["info", "server"]))?.[1] ?? "?",
    };
  } finally {
    server.kill();
  }
}

const piccolo = await measurePiccolo();
const redis = await measureRedis();
const f = (n: number) => n.toFixed(1);
console.log(`${N.toLocaleString()} keys of 16 bytes, ${VALUE_BYTES}-byte values\n`);
console.log("                          bytes/key (store)   bytes/key (RSS growth)");
console.log(`piccolo ShardStore        ${f(piccolo.bytesPerKey).padEnd(20)}${f(piccolo.rssBytesPerKey)}`);
if (redis) {
  console.log(
    `redis ${redis.version.padEnd(20)}${f(redis.bytesPerKey).padEnd(20)}${f(redis.rssBytesPerKey)}   (used_memory)`,
  );
  console.log(`\npiccolo / redis: ${(piccolo.bytesPerKey / redis.bytesPerKey).toFixed(2)} (store vs used_memory)`);
} else console.log("\nredis-server not found: install the Debian package redis-server to compare.");
console.log(`\nload ${f(piccolo.loadNsPerKey)} ns/key, find ${f(piccolo.findNsPerKey)} ns/key (one thread, no IO)`);
writeFileSync(
  "bench/results/memory.json",
  `${JSON.stringify({ date: new Date().toISOString(), keys: N, valueBytes: VALUE_BYTES, node: process.version, piccolo, redis }, null, 2)}\n`,
);
