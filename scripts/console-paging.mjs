#!/usr/bin/env node
// How fast the console's Keys view pages at a million keys (docs/console.md,
// "Paging at 1M keys"): an in-memory node loaded with N keys (default
// 1,000,000) over the native protocol, a gateway in front, then the requests
// the console makes, timed: the first page, 50 pages in a row, and a search
// by a prefix that 1 key in 1,000 has. Not a test: numbers for the docs.
//   npm run build && node scripts/console-paging.mjs [N]
import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PiccoloClient } from "../dist/src/client/client.js";

const N = Number(process.argv[2] ?? 1_000_000);
const CLI = join(fileURLToPath(new URL("..", import.meta.url)), "dist/src/cli/main.js");
const children = [];
function start(args, ready) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = ready.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`${args[0]} exited with ${code}`)));
  });
}
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
});

const port = await start(
  ["server", "--host", "127.0.0.1", "--port", "0", "--resp-port", "0", "--in-memory"],
  /listening on 127\.0\.0\.1:(\d+)/,
);
const db = await PiccoloClient.connect({ host: "127.0.0.1", port });
const t0 = performance.now();
const BATCH = 1000;
for (let i = 0; i < N; i += BATCH * 8) {
  const batches = [];
  for (let b = 0; b < 8 && i + b * BATCH < N; b++) {
    const entries = [];
    for (let j = i + b * BATCH; j < Math.min(N, i + (b + 1) * BATCH); j++)
      entries.push([j % 1000 === 0 ? `rare:${j}` : `user:${j}`, `{"id":${j}}`]);
    batches.push(db.mput(entries));
  }
  await Promise.all(batches);
}
console.log(`loaded ${N} keys in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
await db.close();

const gw = await start(
  ["cerializer", "--host", "127.0.0.1", "--http-port", "0", "--nodes", `127.0.0.1:${port}`],
  /listening on http:\/\/127\.0\.0\.1:(\d+)/,
);
const url = `http://127.0.0.1:${gw}`;
const page = async (prefix, cursor) => {
  const t = performance.now();
  const r = await fetch(
    `${url}/v1/kv?prefix=${prefix}&limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
  );
  const body = await r.json();
  return { ms: performance.now() - t, keys: body.keys.length, cursor: body.cursor };
};
const pct = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))].toFixed(1);
await page("", null); // warm up
for (const [label, prefix] of [
  ["every key", ""],
  ["prefix user:", "user:"],
  ["prefix rare: (1 key in 1,000)", "rare:"],
]) {
  const times = [];
  let cursor = null;
  let keys = 0;
  for (let i = 0; i < 50; i++) {
    const p = await page(prefix, cursor);
    times.push(p.ms);
    keys += p.keys;
    cursor = p.cursor;
    if (cursor === null) break;
  }
  console.log(
    `${label}: ${times.length} pages, ${keys} keys, first ${times[0].toFixed(1)} ms, p50 ${pct(times, 0.5)} ms, p99 ${pct(times, 0.99)} ms, max ${Math.max(...times).toFixed(1)} ms`,
  );
}
process.exit(0);
