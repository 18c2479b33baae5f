// A durable node stopped cleanly (SIGTERM) and started again on the same
// data directory, as a user would: values, versions, TTLs (absolute),
// deletions and FLUSHALL come back over the native protocol and RESP; the
// directory's shard count is adopted or refused as src/journal/data-dir.ts
// promises; a second process on a directory in use refuses to start.
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { VersionMismatchError } from "../../src/client/client.js";
import { defaultShards } from "../../src/node/config.js";
import { type DurableNode, failedStart, killAll, removeDir, startDurable, tempRoot } from "../support/durable.js";

const roots: string[] = [];
function dataDir(): string {
  const root = tempRoot();
  roots.push(root);
  return join(root, "data");
}

afterEach(async () => {
  await killAll();
});
after(() => {
  for (const r of roots) removeDir(r);
});

/** Stops `node` cleanly (exit code 0) and starts another on its directory. */
async function restart(node: DurableNode, args: string[] = []): Promise<DurableNode> {
  assert.equal(await node.stop(), 0, `a clean stop exits 0; stderr:\n${node.stderr()}`);
  return startDurable(node.dataDir, args);
}

describe("a clean restart (SIGTERM) on the same data directory", () => {
  it("native protocol: values, versions, absolute TTLs, deletions; a CAS on a version behaves as before", async () => {
    let node = await startDurable(dataDir());
    let c = await node.client();
    const a1 = await c.put("n:a", "one");
    const a2 = await c.put("n:a", "two");
    assert.ok(a2 > a1);
    const shortTtlAt = Date.now();
    await c.put("n:short", "gone after the restart", { ttlMs: 1500 });
    await c.put("n:long", "keeps its TTL", { ttlMs: 600_000 });
    await c.put("n:abs", "absolute", { expireAtMs: Date.now() + 3_600_000 });
    await c.put("n:persisted", "was ttl", { ttlMs: 600_000 });
    assert.equal(await c.persist("n:persisted"), true);
    await c.put("n:expired-later", "v");
    assert.equal(await c.expire("n:expired-later", 1500), true);
    await c.put("n:del", "x");
    const delVersion = await c.put("n:del", "y");
    assert.equal(await c.delete("n:del"), true);
    await c.mput([
      ["n:m1", "m1"],
      ["n:m2", "m2"],
    ]);
    assert.equal(await c.mdel(["n:m2"]), 1);
    const bin = Buffer.from([0, 255, 1, 254, 10, 13]);
    await c.put("n:bin", bin);

    const keep = ["n:a", "n:long", "n:abs", "n:persisted", "n:m1", "n:bin"];
    const before = new Map<string, { value: Buffer; version: number; expireAtMs: number }>();
    for (const k of keep) before.set(k, (await c.get(k))!);
    assert.notEqual(await c.get("n:short"), null, "the short TTL has not run out before the stop");
    await c.close();

    // Down until both short TTLs have run out: they expire while no process runs.
    assert.equal(await node.stop(), 0);
    const wait = shortTtlAt + 1500 + 300 - Date.now();
    if (wait > 0) await sleep(wait);
    node = await startDurable(node.dataDir);
    assert.equal(node.recoveredKeys, keep.length, `stdout: ${node.stdout()}`);
    assert.match(node.stdout(), new RegExp(`piccolo data in ${node.dataDir} \\(fsync everysec\\): recovered`));

    c = await node.client();
    for (const k of keep) {
      const e = await c.get(k);
      assert.ok(e !== null, `${k} is back`);
      assert.deepEqual(
        { value: e.value, version: e.version, expireAtMs: e.expireAtMs },
        before.get(k),
        `${k}: same value, version and absolute expiry`,
      );
    }
    assert.equal(await c.get("n:short"), null, "a key whose TTL ran out while the node was down is gone");
    assert.equal(await c.get("n:expired-later"), null, "EXPIRE's absolute time is kept too");
    assert.equal(await c.get("n:del"), null, "a deleted key stays deleted");
    assert.equal(await c.get("n:m2"), null);
    const ttl = await c.ttl("n:long");
    assert.ok(ttl > 0 && ttl <= before.get("n:long")!.expireAtMs - Date.now() + 50, `remaining TTL ${ttl}`);
    assert.equal(await c.ttl("n:persisted"), -1, "PERSIST survives");

    // A compare-and-swap after the restart behaves as before it.
    await assert.rejects(c.cas("n:a", "stale", a1), (err: unknown) => {
      assert.ok(err instanceof VersionMismatchError);
      assert.equal(err.currentVersion, a2, "the version the CAS saw is the one from before the restart");
      return true;
    });
    const a3 = await c.cas("n:a", "three", a2);
    assert.ok(a3 > a2);
    assert.equal((await c.get("n:a"))!.value.toString(), "three");
    // Versions never repeat, not even for a key deleted before the restart and inserted again.
    const again = await c.insert("n:del", "again");
    assert.ok(again > delVersion, `re-inserted n:del got version ${again}, it had ${delVersion} before`);
    await c.close();

    // The CAS's result is itself durable.
    node = await restart(node);
    c = await node.client();
    const e = (await c.get("n:a"))!;
    assert.equal(e.value.toString(), "three");
    assert.equal(e.version, a3);
    await c.close();
    await node.stop();
  });

  it("RESP: SET/overwrite, PX/EX, EXPIRE, PERSIST, DEL, INCR, APPEND, MSET, RENAME", async () => {
    let node = await startDurable(dataDir());
    let r = node.redis();
    assert.equal(await r.set("r:a", "x"), "OK");
    assert.equal(await r.set("r:a", "y"), "OK");
    const shortAt = Date.now();
    assert.equal(await r.set("r:short", "v", "PX", 1500), "OK");
    assert.equal(await r.set("r:long", "v", "EX", 600), "OK");
    assert.equal(await r.set("r:exp", "v"), "OK");
    assert.equal(await r.expire("r:exp", 600), 1);
    assert.equal(await r.set("r:per", "v", "EX", 600), "OK");
    assert.equal(await r.persist("r:per"), 1);
    assert.equal(await r.set("r:del", "v"), "OK");
    assert.equal(await r.del("r:del"), 1);
    for (let i = 0; i < 3; i++) await r.incr("r:n");
    await r.append("r:s", "ab");
    await r.append("r:s", "cd");
    assert.equal(await r.mset("r:m1", "1", "r:m2", "2"), "OK");
    assert.equal(await r.rename("r:m2", "r:renamed"), "OK");
    const longPttl = await r.pttl("r:long");
    assert.equal(await r.exists("r:short"), 1);
    assert.equal(await r.dbsize(), 9);

    assert.equal(await node.stop(), 0);
    const wait = shortAt + 1500 + 300 - Date.now();
    if (wait > 0) await sleep(wait);
    node = await startDurable(node.dataDir);
    assert.equal(node.recoveredKeys, 8, `stdout: ${node.stdout()}`);
    r = node.redis();
    assert.equal(await r.dbsize(), 8);
    assert.equal(await r.get("r:a"), "y");
    assert.equal(await r.exists("r:short"), 0, "PX ran out while the node was down");
    assert.equal(await r.pttl("r:short"), -2);
    const pttl = await r.pttl("r:long");
    assert.ok(pttl > 0 && pttl <= longPttl, `EX keeps its remaining TTL: ${pttl} <= ${longPttl}`);
    assert.ok(pttl > longPttl - 30_000, `and does not lose more than the time down: ${pttl}`);
    const expTtl = await r.ttl("r:exp");
    assert.ok(expTtl > 500 && expTtl <= 600, `EXPIRE kept: ${expTtl}`);
    assert.equal(await r.ttl("r:per"), -1, "PERSIST kept");
    assert.equal(await r.get("r:del"), null);
    assert.equal(await r.incr("r:n"), 4, "INCR continues from 3");
    assert.equal(await r.get("r:s"), "abcd");
    assert.equal(await r.get("r:m1"), "1");
    assert.equal(await r.get("r:m2"), null, "the renamed key is gone under its old name");
    assert.equal(await r.get("r:renamed"), "2");
    await node.stop();
  });

  it("FLUSHALL: nothing before it comes back, writes after it do (and a native CAS on one still works)", async () => {
    let node = await startDurable(dataDir());
    const r = node.redis();
    for (let i = 0; i < 200; i++) await r.set(`f:${i}`, String(i));
    assert.equal(await r.flushall(), "OK");
    assert.equal(await r.set("after", "1"), "OK");
    const c = await node.client();
    const v = await c.put("after-native", "n");
    await c.close();

    node = await restart(node);
    assert.equal(node.recoveredKeys, 2, `stdout: ${node.stdout()}`);
    const r2 = node.redis();
    assert.equal(await r2.dbsize(), 2);
    assert.deepEqual((await r2.keys("*")).sort(), ["after", "after-native"]);
    const c2 = await node.client();
    assert.equal((await c2.get("after-native"))!.version, v);
    assert.ok((await c2.cas("after-native", "m", v)) > v);
    await c2.close();
    await node.stop();
  });

  it("a FLUSHALL followed by a SAVE, then a restart: still empty but for what came after", async () => {
    let node = await startDurable(dataDir());
    const r = node.redis();
    for (let i = 0; i < 50; i++) await r.set(`g:${i}`, String(i));
    assert.equal(await r.save(), "OK");
    assert.equal(await r.flushall(), "OK");
    assert.equal(await r.set("g:after", "1"), "OK");
    node = await restart(node);
    assert.equal(node.recoveredKeys, 1, `a FLUSHALL after a snapshot empties what the snapshot held; ${node.stdout()}`);
    assert.deepEqual(await node.redis().keys("*"), ["g:after"]);
    await node.stop();
  });
});

describe("the data directory's shard count", () => {
  it("is adopted by a node started without --shards, and refused with another --shards", async () => {
    const dir = dataDir();
    let node = await startDurable(dir, ["--shards", "3"]);
    const r = node.redis();
    for (let i = 0; i < 300; i++) await r.set(`s:${i}`, String(i));
    assert.equal(await node.stop(), 0);

    for (const shards of ["2", "1", "4"]) {
      const f = await failedStart(dir, ["--shards", shards]);
      assert.equal(f.code, 71, `--shards ${shards} on a 3-shard directory exits 71; stderr: ${f.stderr}`);
      assert.match(f.stderr, new RegExp(`written by 3 shards, and --shards asks for ${shards}`));
      assert.match(f.stderr, /start without --shards \(it adopts 3\) or with --shards 3/);
    }

    node = await startDurable(dir); // default --shards (auto): adopts the directory's 3
    assert.match(node.stdout(), /\(shards: 3\)/, node.stdout());
    assert.equal(node.recoveredKeys, 300);
    const c = await node.client();
    assert.equal((await c.stats()).shards.length, 3);
    for (let i = 0; i < 300; i++)
      assert.equal((await c.get(`s:${i}`))?.value.toString(), String(i), `s:${i} is found in its shard`);
    await c.close();
    node = await restart(node, ["--shards", "3"]); // the same count given explicitly is accepted
    assert.equal(node.recoveredKeys, 300);
    await node.stop();
  });
});

describe("the default layout (--shards auto)", () => {
  // Found by bench:redis: a fresh directory written with --shards 0 records one shard (the maps on the
  // IO thread are one shard on disk), and the next start without --shards "adopted" that one shard as
  // one worker thread: the node as npm start starts it ran a layout nobody chose, twice as slow for one
  // client. A directory of one shard now keeps the layout asked for.
  it("is the same on a fresh directory and on every restart of it", async () => {
    const dir = dataDir();
    const want = defaultShards();
    let node = await startDurable(dir);
    assert.match(node.stdout(), new RegExp(`\\(shards: ${want}\\)`), node.stdout());
    await node.redis().set("layout", "kept");
    node = await restart(node);
    assert.match(node.stdout(), new RegExp(`\\(shards: ${want}\\)`), node.stdout());
    assert.doesNotMatch(node.stderr(), /shard count is adopted/);
    assert.equal(await node.redis().get("layout"), "kept");
    // Asked for explicitly, the other one-shard layout opens the same directory.
    const other = want === 0 ? "1" : want === 1 ? "0" : null;
    if (other !== null) {
      node = await restart(node, ["--shards", other]);
      assert.match(node.stdout(), new RegExp(`\\(shards: ${other}\\)`), node.stdout());
      assert.equal(await node.redis().get("layout"), "kept");
    }
    await node.stop();
  });
});

describe("a data directory that lost its piccolo.json", () => {
  // Found by this test: with no manifest, openDataDir took the directory as new and wrote the
  // configured count although shard-N directories full of journals were there, and keys were then
  // looked up in the wrong shard. It now refuses, saying how to recreate the manifest.
  it("is refused, or opened with the count its shard directories show: never served with keys missing", async () => {
    const dir = dataDir();
    const node = await startDurable(dir, ["--shards", "3"]);
    const r = node.redis();
    for (let i = 0; i < 300; i++) await r.set(`lost:${i}`, String(i));
    assert.equal(await node.stop(), 0);
    rmSync(join(dir, "piccolo.json"));

    const started = await startDurable(dir).catch((err: Error) => err);
    if (started instanceof Error) {
      assert.match(started.message, /exited \(71\)/, "refused as a start failure");
      return;
    }
    const r2 = started.redis();
    let found = 0;
    for (let i = 0; i < 300; i++) if ((await r2.get(`lost:${i}`)) === String(i)) found++;
    await started.stop();
    assert.equal(
      found,
      300,
      `started with "${started.stdout().trim().split("\n").join(" / ")}" and serves ${found} of the 300 keys; ` +
        `piccolo.json now says ${readFileSync(join(dir, "piccolo.json"), "utf8").trim()}`,
    );
  });
});

describe("the LOCK file", () => {
  it("a second process on a directory in use refuses to start, naming the owner; a kill -9'd owner's lock is taken over", async () => {
    const dir = dataDir();
    const first = await startDurable(dir);
    const r = first.redis();
    assert.equal(await r.set("k", "v"), "OK");
    const f = await failedStart(dir);
    assert.equal(f.code, 71, `stderr: ${f.stderr}`);
    assert.match(
      f.stderr,
      new RegExp(`the data directory ${dir} is in use by process ${first.process.pid} \\(its LOCK file\\)`),
    );
    assert.match(f.stderr, /stop that node first, or give this one another --data-dir/);
    // The refused process touched nothing: the owner still serves, and keeps writing.
    assert.equal(await r.get("k"), "v");
    assert.equal(await r.set("k2", "v2"), "OK");

    await first.kill9();
    const second = await startDurable(dir);
    assert.equal(second.recoveredKeys, 2, "the lock of a killed owner is taken over, and its data is there");
    const f2 = await failedStart(dir);
    assert.match(f2.stderr, new RegExp(`in use by process ${second.process.pid}`));
    assert.equal(await second.stop(), 0);
    // A clean stop releases the lock: the next start needs no take-over.
    const third = await startDurable(dir);
    assert.equal(third.recoveredKeys, 2);
    await third.stop();
  });
});
