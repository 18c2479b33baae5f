// Small things a newcomer hit (issue #20), each checked as the newcomer met
// it: `piccolo --version`, what `piccolo cas` says when it loses, INFO
// keyspace's `expires=`, and `piccolo cluster status` without --server
// finding a cluster started by `npm run cluster`.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { redisClient } from "../resp/support.js";
import { CLI, freePort, type RunningNode, startNode, stopAll } from "../support/node.js";

function piccolo(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** INFO keyspace's db0 line as numbers, or null when the node has no keys. */
async function keyspace(respPort: number): Promise<{ keys: number; expires: number } | null> {
  const r = redisClient({ port: respPort });
  try {
    const text = await r.info("keyspace");
    const m = /db0:keys=(\d+),expires=(\d+),avg_ttl=\d+/.exec(text);
    return m === null ? null : { keys: Number(m[1]), expires: Number(m[2]) };
  } finally {
    r.disconnect();
  }
}

/** True if nothing listens on 127.0.0.1:`port` and we may bind it. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

describe("piccolo --version", () => {
  it("prints package.json's version", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8"));
    for (const flag of ["--version", "-v"]) {
      const r = piccolo(flag);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, `${pkg.version}\n`);
    }
  });
});

describe("on a single node", () => {
  let node: RunningNode;
  before(async () => {
    node = await startNode(["--shards", "2", "--in-memory"]);
  });
  after(async () => {
    await node.stop();
  });
  const at = () => ["--server", `127.0.0.1:${node.port}`];

  it("cas and del --if-version that lose say the key's current version (exit 4)", () => {
    assert.equal(piccolo("put", "race", "a", ...at()).code, 0);
    assert.equal(piccolo("put", "race", "b", ...at()).code, 0); // now at version 2
    const cas = piccolo("cas", "race", "1", "mine", ...at());
    assert.equal(cas.code, 4, cas.err);
    assert.equal(cas.out, "");
    assert.match(cas.err, /VERSION_MISMATCH: race is at version 2 \(expected 1\)/);
    const absent = piccolo("cas", "nobody", "3", "x", ...at());
    assert.equal(absent.code, 4, absent.err);
    assert.match(absent.err, /VERSION_MISMATCH: nobody does not exist \(expected version 3\)/);
    const del = piccolo("del", "race", "--if-version", "1", ...at());
    assert.equal(del.code, 4, del.err);
    assert.match(del.err, /race is at version 2 \(expected 1\)/);
    // The version it printed is the one that wins.
    assert.equal(piccolo("cas", "race", "2", "mine", ...at()).code, 0);
  });

  it("INFO keyspace counts the keys with a TTL in expires=", async () => {
    const r = redisClient({ port: node.respPort });
    try {
      await r.flushall();
      assert.equal(await keyspace(node.respPort), null);
      // Spread over both shards: 20 keys, 8 with a TTL.
      for (let i = 0; i < 20; i++) {
        if (i < 8) await r.set(`k${i}`, "v", "PX", 600_000);
        else await r.set(`k${i}`, "v");
      }
      assert.deepEqual(await keyspace(node.respPort), { keys: 20, expires: 8 });
      await r.persist("k0"); // loses its TTL
      await r.del("k1"); // gone with it
      await r.expire("k10", 600); // gains one
      await r.set("k2", "again"); // a plain SET drops the TTL, as in Redis
      assert.deepEqual(await keyspace(node.respPort), { keys: 19, expires: 6 });
    } finally {
      r.disconnect();
    }
  });
});

describe("on a cluster member", () => {
  let dir: string;
  let member: RunningNode;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "piccolo-newcomer-"));
    member = await startNode([
      "--node-id",
      "n1",
      "--cluster",
      `n1=127.0.0.1:${await freePort()}`,
      "--data-dir",
      join(dir, "n1"),
      "--partitions",
      "4",
    ]);
  });
  after(async () => {
    await stopAll([member]);
    await rm(dir, { recursive: true, force: true });
  });

  it("INFO keyspace counts the keys with a TTL in expires=", async () => {
    const r = redisClient({ port: member.respPort });
    try {
      for (let i = 0; i < 10; i++) {
        if (i < 3) await r.set(`c${i}`, "v", "PX", 600_000);
        else await r.set(`c${i}`, "v");
      }
      assert.deepEqual(await keyspace(member.respPort), { keys: 10, expires: 3 });
    } finally {
      r.disconnect();
    }
  });
});

// `npm run cluster` puts its members on 7701-7703 (scripts/cluster.mjs). A member on the last of
// them, with nothing on 7700-7702, shows that the search walks past ports nobody listens on. The
// ports are fixed, so this runs only when all four are free (not beside a running `npm run cluster`).
describe("piccolo cluster status without --server", () => {
  const defaults = [7700, 7701, 7702, 7703];
  let dir: string;
  let member: RunningNode | null = null;
  let free = false;
  before(async () => {
    free = (await Promise.all(defaults.map(portFree))).every((x) => x);
    if (!free) return;
    dir = await mkdtemp(join(tmpdir(), "piccolo-newcomer-"));
    member = await startNode([
      "--port",
      "7703",
      "--node-id",
      "n3",
      "--cluster",
      `n3=127.0.0.1:${await freePort()}`,
      "--data-dir",
      join(dir, "n3"),
      "--partitions",
      "4",
    ]);
  });
  after(async () => {
    await stopAll([member]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it("finds a member on npm run cluster's ports", (t) => {
    if (!free) return t.skip(`one of 127.0.0.1:${defaults.join(",")} is taken (npm run cluster running?)`);
    const { PICCOLO_SERVER: _, ...env } = process.env;
    const r = spawnSync(process.execPath, [CLI, "cluster", "status"], { encoding: "utf8", timeout: 30_000, env });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /as seen by n3/);
    assert.match(r.stderr, /using the cluster member at 127\.0\.0\.1:7703/);
  });
});
