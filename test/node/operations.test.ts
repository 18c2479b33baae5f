// Every operation of the native protocol, end to end: a real node process,
// the real client, in both shard layouts (inline and threaded).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { PiccoloClient } from "../../src/client/client.js";
import type { VersionMismatchError } from "../../src/client/client.js";
import { ErrorCode, PiccoloError } from "../../src/errors.js";
import { expiryLagMs } from "../../src/limits.js";
import { LAYOUTS, type RunningNode, startNode } from "../support/node.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How late a sweep tick may run on a loaded machine (test files run in parallel on 2 cores). */
const SCHEDULING_ALLOWANCE_MS = 2_000;

async function rejectsWith(p: Promise<unknown>, code: number): Promise<PiccoloError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof PiccoloError, `expected a PiccoloError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.message}`);
    return err;
  }
  assert.fail(`expected error code ${code}, but the call succeeded`);
}

for (const layout of LAYOUTS) {
  describe(`operations, ${layout.name}`, () => {
    let node: RunningNode;
    let c: PiccoloClient;
    before(async () => {
      node = await startNode(layout.args);
      c = await node.client();
    });
    after(async () => {
      await c.close();
      assert.equal(await node.stop(), 0, "node exits 0 on SIGTERM");
    });

    it("put then get returns the value, its version and no expiry", async () => {
      const v = await c.put("alpha", "one");
      assert.ok(v > 0);
      const e = await c.get("alpha");
      assert.deepEqual(e, { value: Buffer.from("one"), version: v, expireAtMs: 0 });
    });

    it("get of an absent key is null, not an error", async () => {
      assert.equal(await c.get("never-written"), null);
    });

    it("every write raises the key's version", async () => {
      const v1 = await c.put("ver", "a");
      const v2 = await c.put("ver", "b");
      const v3 = await c.update("ver", "c");
      assert.ok(v1 < v2 && v2 < v3, `${v1} < ${v2} < ${v3}`);
    });

    it("insert only if absent", async () => {
      await c.insert("ins", "first");
      await rejectsWith(c.insert("ins", "second"), ErrorCode.ALREADY_EXISTS);
      assert.equal((await c.get("ins"))!.value.toString(), "first");
    });

    it("update only if present", async () => {
      await rejectsWith(c.update("upd-missing", "x"), ErrorCode.NOT_FOUND);
      assert.equal(await c.get("upd-missing"), null);
      await c.put("upd", "a");
      await c.update("upd", "b");
      assert.equal((await c.get("upd"))!.value.toString(), "b");
    });

    it("compare-and-swap writes only at the expected version and reports the current one", async () => {
      const v1 = await c.put("cas", "a");
      const v2 = await c.cas("cas", "b", v1);
      assert.ok(v2 > v1);
      const err = (await rejectsWith(c.cas("cas", "c", v1), ErrorCode.VERSION_MISMATCH)) as VersionMismatchError;
      assert.equal(err.currentVersion, v2);
      assert.equal((await c.get("cas"))!.value.toString(), "b");
      await rejectsWith(c.cas("cas-absent", "x", 1), ErrorCode.VERSION_MISMATCH);
    });

    it("a version never repeats across delete and re-insert (no ABA)", async () => {
      const v1 = await c.put("aba", "a");
      await c.delete("aba");
      const v2 = await c.put("aba", "a");
      assert.notEqual(v1, v2);
      await rejectsWith(c.cas("aba", "b", v1), ErrorCode.VERSION_MISMATCH);
    });

    it("delete, unconditional and at a version", async () => {
      const v = await c.put("del", "x");
      assert.equal(await c.delete("del-missing"), false);
      await rejectsWith(c.delete("del", { ifVersion: v + 1000 }), ErrorCode.VERSION_MISMATCH);
      assert.equal(await c.exists("del"), true);
      assert.equal(await c.delete("del", { ifVersion: v }), true);
      assert.equal(await c.exists("del"), false);
      assert.equal(await c.delete("del"), false);
    });

    it("binary keys and values, including empty values and every byte", async () => {
      const key = Uint8Array.from([0, 255, 10, 13, 0]);
      const value = Uint8Array.from({ length: 256 }, (_, i) => i);
      await c.put(key, value);
      assert.deepEqual(new Uint8Array((await c.get(key))!.value), value);
      await c.put("empty", new Uint8Array(0));
      assert.equal((await c.get("empty"))!.value.length, 0);
    });

    it("TTL: ttl, persist, expire, and expired keys are never returned", async () => {
      await c.put("t1", "v", { ttlMs: 60_000 });
      const t = await c.ttl("t1");
      assert.ok(t > 59_000 && t <= 60_000, `ttl ${t}`);
      assert.equal(await c.ttl("no-such"), -2);
      await c.put("t2", "v");
      assert.equal(await c.ttl("t2"), -1);
      assert.equal(await c.persist("t1"), true);
      assert.equal(await c.ttl("t1"), -1);
      assert.equal(await c.persist("t1"), false, "no TTL left to remove");
      assert.equal(await c.expire("t2", 150), true);
      assert.equal(await c.expire("no-such", 150), false);
      await c.put("t3", "v", { ttlMs: 150 });
      assert.equal((await c.get("t3"))!.value.toString(), "v");
      await sleep(300);
      assert.equal(await c.get("t2"), null);
      assert.equal(await c.exists("t3"), false);
      await rejectsWith(c.update("t3", "x"), ErrorCode.NOT_FOUND);
      assert.equal(await c.ttl("t3"), -2);
    });

    it("expire with 0 deletes at once; put clears a TTL unless keepTtl", async () => {
      await c.put("e0", "v");
      assert.equal(await c.expire("e0", 0), true);
      assert.equal(await c.exists("e0"), false);
      await c.put("kt", "v", { ttlMs: 60_000 });
      await c.put("kt", "w", { keepTtl: true });
      assert.ok((await c.ttl("kt")) > 0, "keepTtl kept it");
      await c.put("kt", "x");
      assert.equal(await c.ttl("kt"), -1, "a plain put clears it, as Redis SET does");
    });

    it("absolute expiry (expireAtMs)", async () => {
      const at = Date.now() + 60_000;
      await c.put("abs", "v", { expireAtMs: at });
      assert.equal((await c.get("abs"))!.expireAtMs, at);
    });

    it("the active sweep reclaims expired keys nobody reads, within its stated lag", async () => {
      const keys = Array.from({ length: 500 }, (_, i) => `sweep-${i}`);
      const ttlMs = 100;
      // The baseline is taken before the keys exist: read after the mput, it
      // raced the sweep (a shard may sweep its share within 100 ms, before
      // the stats reach it) and the test then waited for keys already counted.
      const before = (await c.stats()).shards.reduce((n, s) => n + s.expired, 0);
      const start = Date.now();
      await c.mput(
        keys.map((k) => [k, "x"]),
        { ttlMs },
      );
      // The guarantee (src/limits.ts): gone within expiryLagMs(E) of expiring,
      // E = keys with a TTL on a shard; at most these 500 and a few earlier
      // ones. Ticks are timed by the OS, so allow for a loaded machine that
      // leaves a thread without a core for a while.
      const lagMs = expiryLagMs(keys.length + 10);
      const deadline = start + ttlMs + lagMs + SCHEDULING_ALLOWANCE_MS;
      let removed = 0;
      while (removed < keys.length && Date.now() < deadline) {
        await sleep(20);
        removed = (await c.stats()).shards.reduce((n, s) => n + s.expired, 0) - before;
      }
      const tookMs = Date.now() - start;
      assert.equal(
        removed,
        keys.length,
        `sweep removed ${removed} of ${keys.length} in ${tookMs} ms (lag ${lagMs} ms)`,
      );
    });

    it("multi-key get, put, delete across shards, in request order", async () => {
      const keys = Array.from({ length: 100 }, (_, i) => `m-${i}`);
      const versions = await c.mput(keys.map((k, i) => [k, `v${i}`]));
      assert.equal(versions.length, 100);
      const got = await c.mget([...keys, "m-absent"]);
      assert.equal(got.length, 101);
      got.slice(0, 100).forEach((e, i) => {
        assert.equal(e!.value.toString(), `v${i}`);
        assert.equal(e!.version, versions[i]);
      });
      assert.equal(got[100], null);
      assert.equal(await c.mdel([...keys.slice(0, 50), "m-absent"]), 50);
      assert.equal((await c.mget(keys.slice(0, 50))).filter((e) => e !== null).length, 0);
    });

    it("at most 10,000 keys per request", async () => {
      const keys = Array.from({ length: 10_001 }, (_, i) => `k${i}`);
      await rejectsWith(c.mget(keys), ErrorCode.TOO_MANY_KEYS);
      await rejectsWith(c.mdel(keys), ErrorCode.TOO_MANY_KEYS);
      assert.equal((await c.mget(keys.slice(0, 10_000))).length, 10_000);
    });

    it("scan visits every key once, and filters by prefix", async () => {
      const keys = Array.from({ length: 300 }, (_, i) => `scan:${i}`);
      await c.mput(keys.map((k) => [k, "v"]));
      const seen = (await c.keys("scan:")).map((k) => k.toString());
      assert.equal(seen.length, 300);
      assert.deepEqual(new Set(seen), new Set(keys));
    });

    it("{ stale: true } reads answer as usual on a single node (the flag is ignored, every read is local)", async () => {
      const v = await c.put("stale-1", "one");
      await c.put("stale-2", "two", { ttlMs: 60_000 });
      const s = { stale: true };
      assert.deepEqual(await c.get("stale-1", s), { value: Buffer.from("one"), version: v, expireAtMs: 0 });
      assert.equal(await c.get("stale-absent", s), null);
      assert.equal(await c.exists("stale-1", s), true);
      assert.ok((await c.ttl("stale-2", s)) > 59_000);
      const [a, b] = await c.mget(["stale-1", "stale-2"], s);
      assert.equal(a?.value.toString(), "one");
      assert.equal(b?.value.toString(), "two");
      assert.deepEqual((await c.keys("stale-", s)).map(String).sort(), ["stale-1", "stale-2"]);
    });

    it("ping and stats", async () => {
      await c.ping();
      const s = await c.stats();
      assert.equal(s.shards.length, layout.args[1] === "0" ? 1 : Number(layout.args[1]));
      assert.ok(s.shards.reduce((n, t) => n + t.keys, 0) > 0);
      assert.ok(s.shards.every((t) => t.memoryBytes >= 0 && t.writes >= 0));
      assert.ok(s.connections >= 1);
    });

    it("a 16 MiB value (the default maximum) goes through the rings in fragments", async () => {
      const big = Buffer.alloc(16 * 1024 * 1024);
      for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 0xff;
      big[big.length - 1] = 7;
      await c.put("big", big);
      const e = await c.get("big");
      assert.equal(e!.value.length, big.length);
      assert.ok(e!.value.equals(big));
      await rejectsWith(c.put("too-big", Buffer.alloc(16 * 1024 * 1024 + 1)), ErrorCode.VALUE_TOO_LARGE);
    });

    it("1000 pipelined requests over keys on every shard come back in order", async () => {
      const n = 1000;
      const writes = Array.from({ length: n }, (_, i) => c.put(`p-${i}`, String(i)));
      const vs = await Promise.all(writes);
      assert.ok(vs.every((v) => v > 0));
      const reads = await Promise.all(Array.from({ length: n }, (_, i) => c.get(`p-${i}`)));
      for (let i = 0; i < n; i++) assert.equal(reads[i]!.value.toString(), String(i));
    });
  });
}
